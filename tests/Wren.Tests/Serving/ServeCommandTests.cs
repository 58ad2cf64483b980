using static Wren.Tests.TestSupport;

namespace Wren.Tests.Serving;

/// <summary><c>wren serve</c>'s argument errors (the serving itself is tested through the same library host).</summary>
[Collection("cli")]
public class ServeCommandTests
{
    [Fact]
    public void A_missing_model_folder_is_a_one_line_error_with_exit_code_2()
    {
        var (code, error) = TestSupport.Cli("serve", "--model", Path.Combine(TempDir(), "absent"), "--port", "0");
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error);
        Assert.Single(error.Trim().Split('\n'));
    }

    [Fact]
    public void A_batch_above_the_kernel_limit_is_refused()
    {
        string folder = Path.Combine(TempDir(), "m");
        using (var model = RandomModel(Config("a", "f"))) model.SavePretrained(folder);
        var (code, error) = TestSupport.Cli("serve", "--model", folder, "--port", "0", "--max-batch", "65");
        Assert.Equal(2, code);
        Assert.Contains("max batch must be between 1 and 64", error);
    }
}
