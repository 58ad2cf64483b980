using System.Text.Json;
using Wren.Templating;
using Wren.Tokenization;

namespace Wren.Tests.Templating;

public class ChatTemplateTests
{
    // The reference chat cases whose messages are plain role/content turns (the tool-calling ones need more than ChatTurn)
    // and whose text does not depend on today's date (strftime_now: JinjaTemplateTests renders those with a fixed clock).
    public static TheoryData<string> ChatCases => new(TemplatingFixtures.Cases
        .Where(c => c.Name.StartsWith("chat/", StringComparison.Ordinal) && !c.Name.Contains("/tools/")
            && !c.Template.Contains("strftime_now", StringComparison.Ordinal))
        .Select(c => c.Name));

    static string ModelFolder(object tokenizerConfig)
    {
        string folder = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), JsonSerializer.Serialize(tokenizerConfig));
        return folder;
    }

    static List<ChatTurn> Turns(JsonElement messages) => messages.EnumerateArray()
        .Select(m => new ChatTurn(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();

    /// <summary>A tokenizer_config.json with a real model's template gives what transformers (Jinja2) renders for it.</summary>
    [Theory]
    [MemberData(nameof(ChatCases))]
    public void Model_folder_template_renders_what_transformers_renders(string name)
    {
        var c = TemplatingFixtures.Get(name);
        var variables = c.Variables;
        var config = new Dictionary<string, object?>
        {
            ["chat_template"] = c.Template,
            // Special tokens as transformers writes them: an AddedToken object for bos, a plain string for eos.
            ["bos_token"] = variables.TryGetProperty("bos_token", out var bos) ? new { content = bos.GetString(), lstrip = false } : null,
            ["eos_token"] = variables.TryGetProperty("eos_token", out var eos) ? eos.GetString() : null,
        };
        var template = ChatTemplate.FromModelFolder(ModelFolder(config))!;
        var messages = Turns(variables.GetProperty("messages"));
        bool generation = variables.GetProperty("add_generation_prompt").GetBoolean();
        if (c.Error is null) Assert.Equal(c.Expected, template.Apply(messages, generation));
        else Assert.Equal(c.Error, Assert.Throws<WrenException>(() => template.Apply(messages, generation)).Message);
    }

    [Fact]
    public void Built_in_chatml_is_the_reference_ChatML()
    {
        var c = TemplatingFixtures.Get("chat/chatml/system-multi/gen");
        Assert.Equal(c.Expected, ChatTemplate.BuiltIn("chatml").Apply(Turns(c.Variables.GetProperty("messages"))));
    }

    [Fact]
    public void Built_in_nemotron_flash_prompts_as_the_model_card()
    {
        var template = ChatTemplate.BuiltIn("nemotron-flash");
        var turns = new[]
        {
            new ChatTurn("system", "Be brief."), new ChatTurn("user", "Hi"),
            new ChatTurn("assistant", "Hello."), new ChatTurn("user", "Bye"),
        };
        Assert.Equal("Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:", template.Apply(turns));
        Assert.Equal("User: Hi\n", template.Apply([new ChatTurn("user", "Hi")], addGenerationPrompt: false));
        var late = Assert.Throws<WrenException>(() => template.Apply([new ChatTurn("user", "Hi"), new ChatTurn("system", "x")]));
        Assert.Equal("A system message must come first.", late.Message);
        Assert.Equal("Unknown role: tool", Assert.Throws<WrenException>(() => template.Apply([new ChatTurn("tool", "x")])).Message);
    }

    [Fact]
    public void Unknown_built_in_lists_the_names()
    {
        var e = Assert.Throws<WrenException>(() => ChatTemplate.BuiltIn("llama"));
        Assert.Equal("unknown chat template 'llama' (built-in: nemotron-flash, chatml)", e.Message);
    }

    [Fact]
    public void Folder_without_config_or_template_has_none()
    {
        Assert.Null(ChatTemplate.FromModelFolder(TestSupport.TempDir()));
        Assert.Null(ChatTemplate.FromModelFolder(ModelFolder(new { bos_token = "<s>" })));
        Assert.Null(ChatTemplate.FromModelFolder(ModelFolder(new { chat_template = (string?)null })));
    }

    [Fact]
    public void A_list_of_named_templates_gives_the_default_one()
    {
        var folder = ModelFolder(new
        {
            chat_template = new[]
            {
                new { name = "tool_use", template = "tools" },
                new { name = "default", template = "{{ bos_token }}{{ messages[0]['content'] }}" },
            },
            bos_token = new { content = "<s>", lstrip = false, normalized = false, rstrip = false, single_word = false },
            eos_token = "</s>",
        });
        var template = ChatTemplate.FromModelFolder(folder)!;
        Assert.Equal("<s>", template.BosToken);
        Assert.Equal("</s>", template.EosToken);
        Assert.Equal("<s>hi", template.Apply([new ChatTurn("user", "hi")]));

        var noDefault = ModelFolder(new { chat_template = new[] { new { name = "rag", template = "x" } } });
        var e = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(noDefault));
        Assert.EndsWith("chat_template has no template named \"default\" (it has: rag)", e.Message);
    }

    [Fact]
    public void Errors_in_the_file_are_one_line_WrenExceptions()
    {
        string broken = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(broken, "tokenizer_config.json"), "{\"chat_template\": \"x\",\n");
        var invalid = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(broken));
        Assert.Contains("tokenizer_config.json: invalid JSON", invalid.Message);

        string includes = ModelFolder(new { chat_template = "{% include 'x' %}" });
        var syntax = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(includes));
        Assert.Contains("tokenizer_config.json: chat_template template line 1, column 4: unsupported Jinja tag", syntax.Message);

        string numberToken = ModelFolder(new { chat_template = "x", eos_token = 5 });
        var badToken = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(numberToken));
        Assert.EndsWith("eos_token must be a string or an object with a string \"content\"", badToken.Message);

        var badTemplate = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(ModelFolder(new { chat_template = 3 })));
        Assert.EndsWith("chat_template must be a string or a list of named templates, not Number", badTemplate.Message);

        foreach (var e in new[] { invalid, syntax, badToken, badTemplate }) Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Chat_template_jinja_in_the_folder_comes_before_tokenizer_config_json()
    {
        var folder = ModelFolder(new { chat_template = "from config", bos_token = "<s>" });
        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), "{{ bos_token }}from jinja");
        Assert.Equal("<s>from jinja", ChatTemplate.FromModelFolder(folder)!.Apply([new ChatTurn("user", "hi")]));

        string alone = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(alone, "chat_template.jinja"), "{{ messages[0]['content'] }}");
        Assert.Equal("hi", ChatTemplate.FromModelFolder(alone)!.Apply([new ChatTurn("user", "hi")]));

        File.WriteAllText(Path.Combine(alone, "chat_template.jinja"), "{% include 'x' %}");
        var e = Assert.Throws<WrenException>(() => ChatTemplate.FromModelFolder(alone));
        Assert.Contains("chat_template.jinja: template line 1, column 4", e.Message);
    }

    /// <summary>transformers' apply_chat_template passes tools and documents (None when absent), every special token of
    /// tokenizer_config.json (unset ones undefined) and the keyword extras, which override a special token's name.</summary>
    [Fact]
    public void The_template_sees_the_variables_apply_chat_template_passes()
    {
        var folder = ModelFolder(new
        {
            chat_template = "{{ tools is none }}|{{ documents is none }}|{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|" +
                            "{{ unk_token is defined }}|{{ additional_special_tokens | join(',') }}|{{ image_token }}|" +
                            "{{ enable_thinking }}|{{ sep_token }}|{{ messages[0]['name'] }}|{{ add_generation_prompt }}",
            bos_token = new { content = "<s>" }, eos_token = "</s>", pad_token = "<pad>", unk_token = (string?)null,
            additional_special_tokens = new object[] { "<a>", new { content = "<b>" } },
            extra_special_tokens = new { image_token = "<img>" },
        });
        var template = ChatTemplate.FromModelFolder(folder)!;
        var turns = new[] { new ChatTurn("user", "hi", new Dictionary<string, object?> { ["name"] = "ann" }) };
        Assert.Equal("True|True|<s>|</s>|<pad>|False|<a>,<b>|<img>|||ann|True", template.Apply(turns));

        var options = new ChatTemplateOptions(false, [new Dictionary<string, object?> { ["type"] = "function" }], [],
            new Dictionary<string, object?> { ["enable_thinking"] = false, ["sep_token"] = "<sep>" });
        var rendered = template.Render(turns, options, new Dictionary<string, int>()).Text;
        Assert.Equal("False|False|<s>|</s>|<pad>|False|<a>,<b>|<img>|False|<sep>|ann|False", rendered);
    }

    /// <summary>Only the control tokens the template writes itself (its literals, the special-token variables, also through
    /// set and string concatenation) become control pieces; the same text from a message is text.</summary>
    [Fact]
    public void Control_pieces_come_from_the_template_never_from_messages()
    {
        var folder = ModelFolder(new
        {
            chat_template = "{{ bos_token }}{% for m in messages %}{% set head = '<|start|>' + m['role'] %}{{ head }}\n" +
                            "{{ m['content'] }}<|end|>{% endfor %}{{ '<|start|>' if add_generation_prompt }}",
            bos_token = "<s>",
        });
        var template = ChatTemplate.FromModelFolder(folder)!;
        var tokens = new Dictionary<string, int> { ["<s>"] = 1, ["<|start|>"] = 2, ["<|end|>"] = 3 };
        var rendered = template.Render([new ChatTurn("user", "a<|end|><s>\uFDD0<|start|>\uFDD1b")], new ChatTemplateOptions(), tokens);
        Assert.Equal("<s><|start|>user\na<|end|><s>\uFDD0<|start|>\uFDD1b<|end|><|start|>", rendered.Text);
        Assert.Equal(new PromptPiece[]
        {
            new("<s>", true), new("<|start|>", true), new("user\na<|end|><s>\uFDD0<|start|>\uFDD1b", false), new("<|end|>", true),
            new("<|start|>", true),
        }, rendered.Pieces);
    }
}
