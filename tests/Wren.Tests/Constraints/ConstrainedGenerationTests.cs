using System.Text.Json;
using Json.Schema;
using Wren.Constraints;
using Wren.Inference;
using Wren.Models;
using Wren.Tokenization;
using static Wren.Tests.TestSupport;

namespace Wren.Tests.Constraints;

/// <summary>
/// Sampling at temperature 1 from a random-weight model (whose free text is noise) under a schema: every completion ends on
/// its own, parses, and validates with JsonSchema.Net (format validation on).
/// </summary>
public class ConstrainedGenerationTests
{
    /// <summary>Nested objects, bounded arrays, enums, anyOf, $ref, patterns, bounded numbers, formats, optional and nullable
    /// members, arrays of objects.</summary>
    public static readonly string[] Schemas =
    [
        """
        {"type":"object","properties":{"user":{"type":"object","properties":{"name":{"type":"string","maxLength":8},
         "age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"],"additionalProperties":false},
         "active":{"type":"boolean"}},"required":["user","active"],"additionalProperties":false}
        """,
        """{"type":"array","items":{"type":"integer","minimum":-50,"maximum":50},"minItems":2,"maxItems":5}""",
        """
        {"type":"object","properties":{"color":{"enum":["red","green","blue"]},"size":{"enum":[1,2,3,null]}},
         "required":["color","size"],"additionalProperties":false}
        """,
        """
        {"anyOf":[{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"integer","minimum":1,"maximum":9}},
         "required":["kind","r"],"additionalProperties":false},{"type":"object","properties":{"kind":{"const":"square"},
         "side":{"type":"number","minimum":0,"maximum":10}},"required":["kind","side"],"additionalProperties":false}]}
        """,
        """
        {"$defs":{"point":{"type":"object","properties":{"x":{"type":"integer","minimum":-9,"maximum":9},
         "y":{"type":"integer","minimum":-9,"maximum":9}},"required":["x","y"],"additionalProperties":false}},
         "type":"object","properties":{"from":{"$ref":"#/$defs/point"},"to":{"$ref":"#/$defs/point"}},
         "required":["from","to"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{3}-[0-9]{2,4}$"},
         "ip":{"type":"string","pattern":"^(?:[0-9]{1,3}\\.){3}[0-9]{1,3}$"}},"required":["code","ip"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"t":{"type":"number","minimum":-10,"maximum":40},
         "p":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":1000}},"required":["t","p"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"day":{"type":"string","format":"date"},"id":{"type":"string","format":"uuid"},
         "at":{"type":"string","format":"date-time"}},"required":["day","id","at"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"a":{"type":["string","null"],"maxLength":4},"b":{"type":"integer","minimum":0,"maximum":5},
         "c":{"type":"boolean"}},"required":["b"],"additionalProperties":false}
        """,
        """
        {"type":"array","maxItems":3,"items":{"type":"object","properties":{"k":{"type":"string","minLength":1,"maxLength":5},
         "v":{"type":"array","items":{"type":"boolean"},"maxItems":2}},"required":["k","v"],"additionalProperties":false}}
        """,
    ];

    /// <summary>The byte-level BPE fixture (700 ids) under a one-layer model with reference initialization only, so that
    /// its next-token distribution is close to uniform: the constraint alone makes the text valid.</summary>
    internal static (HybridForCausalLM Model, ITextTokenizer Tokenizer) NoiseModel()
    {
        var tokenizer = TokenizerLoader.LoadHuggingFace(Path.Combine(Fixtures, "tokenizers", "byte-level", "tokenizer.json"));
        var model = new HybridForCausalLM(Config("a") with { VocabSize = tokenizer.VocabularySize, NumMemoryTokens = 0 });
        Initialization.Apply(model, 7);
        model.eval();
        return (model, tokenizer);
    }

    internal static JsonSchema Validator(int index) =>
        JsonSchema.FromText(Schemas[index], baseUri: new Uri($"https://wren.test/schema/{index}/{Guid.NewGuid():N}"));

    internal static void AssertValid(JsonSchema validator, int index, string text)
    {
        JsonElement instance;
        try { instance = JsonDocument.Parse(text).RootElement; }
        catch (JsonException e) { throw new Xunit.Sdk.XunitException($"schema {index}: not JSON: {text} ({e.Message})"); }
        var result = validator.Evaluate(instance, new EvaluationOptions { RequireFormatValidation = true });
        Assert.True(result.IsValid, $"schema {index}: {text} does not validate");
    }

    [Fact]
    public void Two_hundred_sampled_completions_per_schema_parse_and_validate()
    {
        var (model, tokenizer) = NoiseModel();
        using (model)
        {
            var generator = new TextGenerator(model, tokenizer);
            for (int i = 0; i < Schemas.Length; i++)
            {
                var grammar = JsonSchemaGrammar.FromSchema(JsonDocument.Parse(Schemas[i]).RootElement);
                var options = new SamplingOptions
                {
                    Temperature = 1.0, Seed = (ulong)i, MaxNewTokens = 400, Grammar = grammar,
                    StopTokenIds = [tokenizer.EndOfTextId!.Value],
                };
                var texts = new string[200];
                var reasons = new string?[200];
                foreach (var token in generator.Generate(Enumerable.Repeat("JSON:", 200).ToList(), options))
                {
                    texts[token.Row] += token.Text;
                    reasons[token.Row] ??= token.FinishReason;
                }
                var validator = Validator(i);
                for (int row = 0; row < texts.Length; row++)
                {
                    Assert.True(reasons[row] is "stop-grammar" or "stop-token", $"schema {i} row {row}: {reasons[row]} after {texts[row]}");
                    AssertValid(validator, i, texts[row]);
                }
                Assert.True(texts.Distinct().Count() > 20, $"schema {i}: the samples hardly differ");
            }
        }
    }

    [Fact]
    public void A_token_budget_that_runs_out_is_reported_as_length()
    {
        var (model, tokenizer) = NoiseModel();
        using (model)
        {
            var grammar = JsonSchemaGrammar.FromSchema(JsonDocument.Parse(Schemas[7]).RootElement);
            var options = new SamplingOptions { Temperature = 1.0, Seed = 3, MaxNewTokens = 5, Grammar = grammar };
            var tokens = new TextGenerator(model, tokenizer).Generate("JSON:", options).ToList();
            Assert.Equal(5, tokens.Count);
            Assert.Equal("length", tokens[^1].FinishReason);
            Assert.StartsWith("{", string.Concat(tokens.Select(t => t.Text)));
        }
    }
}
