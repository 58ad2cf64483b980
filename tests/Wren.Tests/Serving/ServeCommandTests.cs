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

    static void AssertOneLineError(int code, string error, string part)
    {
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error);
        Assert.Single(error.Trim().Split('\n'));
        Assert.Contains(part, error);
    }

    [Theory]
    [InlineData("--port", "70000", "--port must be 0 (any free port) to 65535, got 70000")]
    [InlineData("--port", "-1", "--port must be 0 (any free port) to 65535, got -1")]
    [InlineData("--api-key", "", "--api-key is empty")]
    public void An_impossible_port_or_an_empty_api_key_is_refused(string option, string value, string message)
    {
        var (code, error) = TestSupport.Cli("serve", "--model", Path.Combine(Fixtures, "nemotron-flash-example"), option, value);
        AssertOneLineError(code, error, message);
    }

    [Theory]
    [InlineData("--request-timeout 0", "--request-timeout must be positive seconds")]
    [InlineData("--request-timeout -3", "--request-timeout must be positive seconds")]
    [InlineData("--max-request-bytes lots", "--max-request-bytes must look like 4GB")]
    [InlineData("--cors-origin evil", "--cors-origin must look like https://app.example")]
    [InlineData("--cors-origin https://a.example/path", "--cors-origin must look like https://app.example")]
    [InlineData("--allowed-hosts wren.lan:8080", "--allowed-hosts takes host names without ports")]
    [InlineData("--api-key k --api-key-file key.txt", "give --api-key or --api-key-file, not both")]
    [InlineData("--api-key-file absent-key.txt", "--api-key-file 'absent-key.txt' does not exist")]
    public void Bad_hardening_options_are_one_line_errors(string args, string message)
    {
        var (code, error) = TestSupport.Cli(["serve", "--model", Path.Combine(Fixtures, "nemotron-flash-example"), "--port", "0",
                                             .. args.Split(' ')]);
        AssertOneLineError(code, error, message);
    }

    [Fact]
    public void A_context_whose_caches_exceed_the_machine_is_refused_before_allocating()
    {
        // The example model has attention layers: 99,999,999 tokens of keys and values per slot are gigabytes each.
        var (code, error) = TestSupport.Cli("serve", "--model", Path.Combine(Fixtures, "nemotron-flash-example"), "--port", "0",
                                            "--max-context", "99999999");
        AssertOneLineError(code, error, "of 99999999 tokens need");
        Assert.Contains("lower --max-context or --max-batch, or set --max-memory", error);
    }

    [Fact]
    public void A_port_in_use_is_one_line()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        int port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var (code, error) = TestSupport.Cli("serve", "--model", Path.Combine(Fixtures, "nemotron-flash-example"), "--port", $"{port}");
        AssertOneLineError(code, error, $"cannot listen on 127.0.0.1:{port}");
    }
}
