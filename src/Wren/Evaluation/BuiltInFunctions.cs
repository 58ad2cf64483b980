using System.Globalization;
using System.Text.RegularExpressions;

namespace Wren.Evaluation;

/// <summary>
/// The Python functions that lm-evaluation-harness task files name with <c>!function file.function</c>, re-implemented
/// for the tasks Wren ships: a task file may name these (and only these, since Wren runs no Python). Each one follows
/// the harness's source, cited below.
/// </summary>
public static partial class BuiltInFunctions
{
    /// <summary>Document processors for <c>process_docs</c>: a document in, the document with added fields out.</summary>
    public static IReadOnlyDictionary<string, Func<Dictionary<string, object?>, Dictionary<string, object?>>> DocProcessors { get; } =
        new Dictionary<string, Func<Dictionary<string, object?>, Dictionary<string, object?>>>
        {
            ["hellaswag.process_docs"] = HellaSwagDocument,
        };

    /// <summary>Functions for <c>doc_to_text</c>, <c>doc_to_target</c> and <c>doc_to_choice</c>: a document in, a value out.</summary>
    public static IReadOnlyDictionary<string, Func<IReadOnlyDictionary<string, object?>, object?>> DocFunctions { get; } =
        new Dictionary<string, Func<IReadOnlyDictionary<string, object?>, object?>>
        {
            ["preprocess_winogrande.doc_to_text"] = WinograndeText,
            ["preprocess_winogrande.doc_to_target"] = WinograndeTarget,
            ["preprocess_winogrande.doc_to_choice"] = WinograndeChoices,
        };

    /// <summary>Every name a task file may give after <c>!function</c>.</summary>
    public static IEnumerable<string> Names => DocProcessors.Keys.Concat(DocFunctions.Keys).Order(StringComparer.Ordinal);

    /// <summary>
    /// HellaSwag (lm_eval/tasks/hellaswag/utils.py, <c>process_docs</c>): <c>query</c> = preprocess(activity_label + ": " +
    /// ctx_a + " " + ctx_b.capitalize()), <c>choices</c> = preprocess(each ending), <c>gold</c> = int(label).
    /// </summary>
    static Dictionary<string, object?> HellaSwagDocument(Dictionary<string, object?> doc)
    {
        string context = Text(doc, "ctx_a") + " " + Capitalize(Text(doc, "ctx_b"));
        var endings = doc.GetValueOrDefault("endings") as List<object?>
            ?? throw new WrenException("hellaswag.process_docs: field \"endings\" must be a list of strings");
        return new Dictionary<string, object?>(doc)
        {
            ["query"] = HellaSwagPreprocess(Text(doc, "activity_label") + ": " + context),
            ["choices"] = endings.Select(e => (object?)HellaSwagPreprocess(Convert.ToString(e, CultureInfo.InvariantCulture) ?? ""))
                .ToList(),
            ["gold"] = Convert.ToInt64(doc.GetValueOrDefault("label"), CultureInfo.InvariantCulture),
        };
    }

    /// <summary>The harness's <c>preprocess</c>: strip, " [title]" → ". ", drop "[…]" (WikiHow artifacts), "  " → " ".</summary>
    public static string HellaSwagPreprocess(string text)
    {
        text = text.Trim().Replace(" [title]", ". ", StringComparison.Ordinal);
        text = Brackets().Replace(text, "");
        return text.Replace("  ", " ", StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\[.*?\]")]
    private static partial Regex Brackets();

    /// <summary>Python's <c>str.capitalize</c>: first character upper case, the rest lower case.</summary>
    static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Winogrande (lm_eval/tasks/winogrande/preprocess_winogrande.py): the index of the right option ("1" → 0, "2" → 1).
    /// The harness scores one context per option, so this index picks the gold context.</summary>
    static object? WinograndeText(IReadOnlyDictionary<string, object?> doc) =>
        Convert.ToString(doc.GetValueOrDefault("answer"), CultureInfo.InvariantCulture) switch
        {
            "1" => 0L,
            "2" => 1L,
            var other => throw new WrenException($"winogrande: field \"answer\" must be \"1\" or \"2\", got \"{other}\""),
        };

    /// <summary>Winogrande: the sentence after the blank, stripped (the continuation scored in every context).</summary>
    static object? WinograndeTarget(IReadOnlyDictionary<string, object?> doc)
    {
        string sentence = Text(doc, "sentence");
        return sentence[(Blank(sentence) + 1)..].Trim();
    }

    /// <summary>Winogrande: the sentence up to the blank with each option filled in (one context per option).</summary>
    static object? WinograndeChoices(IReadOnlyDictionary<string, object?> doc)
    {
        string sentence = Text(doc, "sentence");
        string before = sentence[..Blank(sentence)];
        return new List<object?> { before + Text(doc, "option1"), before + Text(doc, "option2") };
    }

    static int Blank(string sentence)
    {
        int blank = sentence.IndexOf('_', StringComparison.Ordinal);
        return blank >= 0 ? blank : throw new WrenException($"winogrande: the sentence has no blank '_': \"{sentence}\"");
    }

    static string Text(IReadOnlyDictionary<string, object?> doc, string field) =>
        doc.TryGetValue(field, out var value) && value is not null
            ? Convert.ToString(value, CultureInfo.InvariantCulture)!
            : throw new WrenException($"the document has no field \"{field}\" (fields: {string.Join(", ", doc.Keys)})");
}
