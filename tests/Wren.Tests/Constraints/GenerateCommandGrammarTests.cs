using static Wren.Tests.TestSupport;

namespace Wren.Tests.Constraints;

/// <summary><c>wren generate --json-schema / --grammar</c>: a grammar runs, a bad one is a one-line error (exit code 2).</summary>
public class GenerateCommandGrammarTests
{
    [Fact]
    public void Generate_takes_a_grammar_file_and_refuses_a_bad_schema_by_keyword()
    {
        string dir = Path.Combine(TempDir(), "model");
        using (var model = RandomModel(Config("a") with { VocabSize = 256 })) model.SavePretrained(dir);
        string gbnf = Path.Combine(TempDir(), "answer.gbnf"), schema = Path.Combine(TempDir(), "bad.json");
        File.WriteAllText(gbnf, "root ::= (\"yes\" | \"no\") \"!\"");
        File.WriteAllText(schema, "{\"type\":\"integer\",\"multipleOf\":3}");
        var (ok, _) = TestSupport.Cli("generate", "--model", dir, "--prompt", "Q:", "--grammar", gbnf, "--temperature", "1",
                                      "--max-new-tokens", "8");
        Assert.Equal(0, ok);
        var (code, error) = TestSupport.Cli("generate", "--model", dir, "--prompt", "Q:", "--json-schema", schema);
        Assert.Equal(2, code);
        Assert.Contains("'multipleOf'", error);
        var (both, bothError) = TestSupport.Cli("generate", "--model", dir, "--prompt", "Q:", "--json-schema", schema, "--grammar", gbnf);
        Assert.Equal(2, both);
        Assert.Contains("not both", bothError);
    }
}
