using System.Globalization;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Wren.Evaluation;

/// <summary>Data for one task given on the command line: <c>task=FILE</c> (the evaluated split) or <c>task:split=FILE</c>.</summary>
public sealed record DataOverride(string Task, string? Split, string File)
{
    /// <summary>Reads <c>piqa=valid.jsonl</c> or <c>mmlu:dev=dev.parquet</c>.</summary>
    public static DataOverride Parse(string text)
    {
        int equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals <= 0 || equals == text.Length - 1)
            throw new WrenException($"--data '{text}': expected TASK=FILE or TASK:SPLIT=FILE " +
                                    "(e.g. piqa=valid.jsonl, mmlu:dev=dev.parquet)");
        string name = text[..equals], file = text[(equals + 1)..];
        int colon = name.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? new DataOverride(name, null, file) : new DataOverride(name[..colon], name[(colon + 1)..], file);
    }
}

/// <summary>
/// Reads lm-evaluation-harness task files (YAML; lm_eval/tasks/*/*.yaml) into <see cref="EvalTask"/>s: <c>include</c>
/// merges a base file (the including file's keys win), <c>group</c> files list tasks of their folder, and the data is found
/// through <c>dataset_kwargs.data_files</c> (or Wren's <c>data_files</c>), a local <c>dataset_path</c> folder, or the
/// command line. Templates are Jinja (<see cref="Templating.JinjaTemplate"/>); <c>!function</c> names only
/// <see cref="BuiltInFunctions"/>.
/// </summary>
public static partial class TaskFiles
{
    /// <summary>
    /// The tasks named by <paramref name="specs"/>: a YAML file, a folder of them (files starting with '_' are templates
    /// for <c>include</c>), or the name of a shipped task or folder (<see cref="ShippedNames"/>). Errors name the file,
    /// the task and the key.
    /// </summary>
    public static IReadOnlyList<EvalTask> Resolve(IEnumerable<string> specs, IReadOnlyList<DataOverride>? data = null)
    {
        data ??= [];
        var tasks = new List<EvalTask>();
        foreach (var spec in specs)
        {
            if (File.Exists(spec)) tasks.AddRange(LoadFile(new TaskPath(Path.GetFullPath(spec), false), data));
            else if (Directory.Exists(spec))
            {
                var files = Directory.EnumerateFiles(spec, "*.*", SearchOption.AllDirectories)
                    .Where(f => IsTaskFile(Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
                if (files.Count == 0) throw new WrenException($"--tasks {spec}: the folder holds no task files (*.yaml)");
                foreach (var file in files) tasks.AddRange(LoadTasksOnly(new TaskPath(Path.GetFullPath(file), false), data));
            }
            else
            {
                var shipped = TaskPath.ShippedFiles.Where(f => IsTaskFile(f.Split('/')[^1]) &&
                    (f == spec + ".yaml" || f.StartsWith(spec + "/", StringComparison.Ordinal))).Order(StringComparer.Ordinal).ToList();
                if (shipped.Count == 0)
                    throw new WrenException($"--tasks {spec}: not a task file, a folder, or a shipped task " +
                                            $"({string.Join(", ", ShippedNames)})");
                foreach (var file in shipped) tasks.AddRange(LoadTasksOnly(new TaskPath(file, true), data));
            }
        }
        foreach (var unused in data.Where(d => tasks.All(t => t.Name != d.Task)))
            throw new WrenException($"--data {unused.Task}=…: no task named {unused.Task} among " +
                                    string.Join(", ", tasks.Select(t => t.Name)));
        var duplicate = tasks.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new WrenException($"task {duplicate.Key} is given twice ({string.Join(", ", duplicate.Select(t => t.Origin))})");
        return tasks;
    }

    /// <summary>Shipped tasks and folders (the repository's <c>tasks/</c>), as <c>--tasks</c> accepts them.</summary>
    public static IEnumerable<string> ShippedNames => TaskPath.ShippedFiles
        .Where(f => IsTaskFile(f.Split('/')[^1]))
        .Select(f => f.Contains('/') ? f[..f.IndexOf('/')] : f[..^".yaml".Length])
        .Distinct().Order(StringComparer.Ordinal);

    static bool IsTaskFile(string name) =>
        !name.StartsWith('_') && (name.EndsWith(".yaml", StringComparison.Ordinal) || name.EndsWith(".yml", StringComparison.Ordinal));

    /// <summary>A file's tasks, skipping group files (a folder's group lists tasks that are loaded on their own).</summary>
    static IEnumerable<EvalTask> LoadTasksOnly(TaskPath path, IReadOnlyList<DataOverride> data) =>
        ReadMerged(path).ContainsKey("group") ? [] : LoadFile(path, data);

    /// <summary>The tasks of one file: itself, or the tasks its <c>group</c> lists (found by <c>task</c> or <c>tag</c> in its
    /// folder).</summary>
    public static IReadOnlyList<EvalTask> LoadFile(TaskPath path, IReadOnlyList<DataOverride>? data = null)
    {
        data ??= [];
        var config = ReadMerged(path);
        if (!config.TryGetValue("group", out var group)) return [Build(config, path, data)];
        var members = config.GetValueOrDefault("task") switch
        {
            string one => [one],
            List<object?> many => many.Select(m => m as string ?? throw new WrenException(
                $"{path}: group {group}: only task names are supported in its task list, not inline task configs")).ToList(),
            _ => throw new WrenException($"{path}: group {group} needs a task list"),
        };
        var siblings = Siblings(path).Select(p => (Path: p, Config: ReadMerged(p))).ToList();
        var tasks = new List<EvalTask>();
        foreach (var member in members)
        {
            var found = siblings.Where(s => Equals(s.Config.GetValueOrDefault("group"), member) ||
                                            Equals(s.Config.GetValueOrDefault("task"), member) ||
                                            Tags(s.Config).Contains(member)).ToList();
            if (found.Count == 0) throw new WrenException($"{path}: group {group}: no task or tag '{member}' in the same folder");
            foreach (var (file, _) in found) tasks.AddRange(LoadFile(file, data));
        }
        return tasks;
    }

    static IEnumerable<TaskPath> Siblings(TaskPath path)
    {
        if (!path.Shipped)
            return Directory.EnumerateFiles(Path.GetDirectoryName(path.Path)!)
                .Where(f => IsTaskFile(Path.GetFileName(f)) && f != path.Path).Order(StringComparer.Ordinal)
                .Select(f => new TaskPath(f, false));
        string folder = path.Path.Contains('/') ? path.Path[..(path.Path.LastIndexOf('/') + 1)] : "";
        return TaskPath.ShippedFiles.Where(f => f.StartsWith(folder, StringComparison.Ordinal) && !f[folder.Length..].Contains('/') &&
                                                IsTaskFile(f[folder.Length..]) && f != path.Path)
            .Order(StringComparer.Ordinal).Select(f => new TaskPath(f, true));
    }

    static IEnumerable<string> Tags(Dictionary<string, object?> config) => config.GetValueOrDefault("tag") switch
    {
        string one => [one],
        List<object?> many => many.OfType<string>(),
        _ => [],
    };

    /// <summary>The file's keys with its <c>include</c> chain merged in (included first, own keys override).</summary>
    static Dictionary<string, object?> ReadMerged(TaskPath path, int depth = 0)
    {
        if (depth > 16) throw new WrenException($"{path}: include nests more than 16 levels (a cycle?)");
        var own = ReadYaml(path);
        if (!own.Remove("include", out var include)) return own;
        if (include is not string includeName) throw new WrenException($"{path}: include must be a file name");
        var target = path.Sibling(includeName);
        if (!target.Exists) throw new WrenException($"{path}: include: {target} not found");
        var merged = ReadMerged(target, depth + 1);
        foreach (var (key, value) in own) merged[key] = value;
        return merged;
    }

    /// <summary>A YAML mapping as plain values, with PyYAML's resolution of plain scalars (null, booleans, numbers).</summary>
    static Dictionary<string, object?> ReadYaml(TaskPath path)
    {
        var yaml = new YamlStream();
        try { yaml.Load(new StringReader(path.ReadText())); }
        catch (YamlException e)
        { throw new WrenException($"{path}: invalid YAML at line {e.Start.Line}, column {e.Start.Column}: {e.Message}", e); }
        if (yaml.Documents.Count == 0 || yaml.Documents[0].RootNode is not YamlMappingNode root)
            throw new WrenException($"{path}: expected a YAML mapping of task keys");
        return (Dictionary<string, object?>)Plain(root, path)!;
    }

    static object? Plain(YamlNode node, TaskPath path)
    {
        string tag = node.Tag.IsEmpty ? "" : node.Tag.Value;
        if (tag == "!function")
            return node is YamlScalarNode function ? new FunctionReference(function.Value ?? "")
                : throw new WrenException($"{path}: line {node.Start.Line}: !function needs a name");
        bool standard = tag.StartsWith("!!", StringComparison.Ordinal) || tag.StartsWith("tag:yaml.org", StringComparison.Ordinal);
        if (tag.StartsWith('!') && !standard)
            throw new WrenException($"{path}: line {node.Start.Line}: unsupported YAML tag {tag}");
        return node switch
        {
            YamlMappingNode map => map.Children.ToDictionary(
                kv => (kv.Key as YamlScalarNode)?.Value ?? throw new WrenException($"{path}: line {kv.Key.Start.Line}: keys must be plain"),
                kv => Plain(kv.Value, path)),
            YamlSequenceNode sequence => sequence.Children.Select(c => Plain(c, path)).ToList(),
            YamlScalarNode scalar when scalar.Style == ScalarStyle.Plain && tag == "" => Resolve(scalar.Value ?? ""),
            YamlScalarNode scalar => scalar.Value ?? "",
            _ => throw new WrenException($"{path}: line {node.Start.Line}: unsupported YAML node"),
        };
    }

    static object? Resolve(string text)
    {
        if (text is "" or "~" or "null" or "Null" or "NULL") return null;
        if (text is "true" or "True" or "TRUE" or "yes" or "Yes" or "on" or "On") return true;
        if (text is "false" or "False" or "FALSE" or "no" or "No" or "off" or "Off") return false;
        if (IntegerPattern().IsMatch(text)) return long.Parse(text.Replace("_", ""), CultureInfo.InvariantCulture);
        if (FloatPattern().IsMatch(text)) return double.Parse(text.Replace("_", ""), CultureInfo.InvariantCulture);
        return text;
    }

    [GeneratedRegex(@"^[-+]?[0-9][0-9_]*$")]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?$")]
    private static partial Regex FloatPattern();

    /// <summary>Keys that change what the harness computes and that Wren does not implement: refused, not ignored.</summary>
    static readonly string[] Unsupported = ["use_prompt", "doc_to_image", "doc_to_audio", "gen_prefix", "process_results", "filter_list"];

    static EvalTask Build(Dictionary<string, object?> c, TaskPath path, IReadOnlyList<DataOverride> data)
    {
        string name = c.GetValueOrDefault("task") as string
            ?? throw new WrenException($"{path}: no 'task' name (every task file needs task: NAME)");
        string where = $"task {name} ({path})";
        foreach (var key in Unsupported.Where(c.ContainsKey))
            throw new WrenException($"{where}: key '{key}' is not supported by Wren's evaluator");
        string outputType = c.GetValueOrDefault("output_type") as string ?? OutputTypes.Loglikelihood;
        if (!OutputTypes.Metrics.TryGetValue(outputType, out var metricInfo))
            throw new WrenException($"{where}: output_type '{outputType}' is not supported " +
                                    $"({string.Join(", ", OutputTypes.Metrics.Keys)})");

        DocField Field(string key, object? fallback = null)
        {
            object? value = c.TryGetValue(key, out var v) ? v : fallback;
            return DocField.From(value, $"{where}: {key}");
        }
        var docToChoice = c.GetValueOrDefault("doc_to_choice") is { } choice ? DocField.From(choice, $"{where}: doc_to_choice") : null;
        if (outputType == OutputTypes.MultipleChoice && docToChoice is null)
            throw new WrenException($"{where}: multiple_choice needs doc_to_choice");
        if (outputType != OutputTypes.LoglikelihoodRolling && !c.ContainsKey("doc_to_text"))
            throw new WrenException($"{where}: doc_to_text is missing");
        if (!c.ContainsKey("doc_to_target")) throw new WrenException($"{where}: doc_to_target is missing");

        var metrics = ReadMetrics(c.GetValueOrDefault("metric_list"), metricInfo, outputType, where);
        string? processDocs = c.GetValueOrDefault("process_docs") switch
        {
            null => null,
            FunctionReference f when BuiltInFunctions.DocProcessors.ContainsKey(f.Name) => f.Name,
            FunctionReference f => throw new WrenException(
                $"{where}: process_docs: !function {f.Name} is Python code, which Wren does not run; built-in processors: " +
                string.Join(", ", BuiltInFunctions.DocProcessors.Keys)),
            var other => throw new WrenException($"{where}: process_docs must be !function NAME, got {other}"),
        };
        var fewshotConfig = c.GetValueOrDefault("fewshot_config") as Dictionary<string, object?>;
        foreach (var key in fewshotConfig?.Keys.Where(k => k is not ("sampler" or "split")) ?? [])
            throw new WrenException($"{where}: fewshot_config.{key} is not supported by Wren's evaluator (sampler and split are)");
        string sampler = fewshotConfig?.GetValueOrDefault("sampler") as string ?? "default";
        if (sampler is not ("default" or "first_n"))
            throw new WrenException($"{where}: fewshot_config.sampler '{sampler}' is not supported (default, first_n)");
        int? numFewshot = c.GetValueOrDefault("num_fewshot") is { } k ? Convert.ToInt32(k, CultureInfo.InvariantCulture) : null;

        var task = new EvalTask(
            name, outputType, DataFilesOf(c, path, name, data, where),
            Split(c, "training_split", where), Split(c, "validation_split", where), Split(c, "test_split", where),
            Split(c, "fewshot_split", where) ?? fewshotConfig?.GetValueOrDefault("split") as string, sampler,
            c.GetValueOrDefault("fewshot_match") as string,
            Field("doc_to_text", ""), Field("doc_to_target"), docToChoice,
            Delimiter(c, "target_delimiter", " ", where), Delimiter(c, "fewshot_delimiter", "\n\n", where),
            c.GetValueOrDefault("description") is { } d ? DocField.From(d, $"{where}: description") : null,
            metrics, processDocs, numFewshot, path.ToString());
        _ = task.EvaluationSplit;   // fails early when the task has nothing to evaluate
        return task;
    }

    static string? Split(Dictionary<string, object?> c, string key, string where) => c.GetValueOrDefault(key) switch
    {
        null => null,
        string s => s,
        var other => throw new WrenException($"{where}: {key} must be a split name, got {other}"),
    };

    static string Delimiter(Dictionary<string, object?> c, string key, string fallback, string where) =>
        !c.TryGetValue(key, out var value) ? fallback
        : value as string ?? throw new WrenException($"{where}: {key} must be a string (quote it in YAML)");

    static List<string> ReadMetrics(object? list, (string[] Defaults, string[] Allowed) info, string outputType, string where)
    {
        if (list is null) return [.. info.Defaults];
        if (list is not List<object?> entries) throw new WrenException($"{where}: metric_list must be a list of {{metric: NAME}}");
        var metrics = new List<string>();
        foreach (var entry in entries)
        {
            string metric = (entry as Dictionary<string, object?>)?.GetValueOrDefault("metric") as string
                ?? throw new WrenException($"{where}: every metric_list entry needs 'metric: NAME'");
            if (!info.Allowed.Contains(metric))
                throw new WrenException($"{where}: metric '{metric}' is not available for {outputType} " +
                                        $"({string.Join(", ", info.Allowed)})");
            metrics.Add(metric);
        }
        return metrics;
    }

    /// <summary>Split → files, from the command line (first), <c>dataset_kwargs.data_files</c> / <c>data_files</c>, or a local
    /// <c>dataset_path</c> folder holding files named after their splits (<c>validation.jsonl</c>,
    /// <c>test-00000-of-00001.parquet</c>).</summary>
    static Dictionary<string, IReadOnlyList<TaskPath>> DataFilesOf(Dictionary<string, object?> c, TaskPath path, string name,
                                                                  IReadOnlyList<DataOverride> data, string where)
    {
        var files = new Dictionary<string, IReadOnlyList<TaskPath>>();
        var declared = (c.GetValueOrDefault("dataset_kwargs") as Dictionary<string, object?>)?.GetValueOrDefault("data_files")
                       ?? c.GetValueOrDefault("data_files");
        switch (declared)
        {
            case null: break;
            case string one: files["train"] = [path.Sibling(one)]; break;   // a bare file is the "train" split, as in HF datasets
            case List<object?> many: files["train"] = FileList(many, path, where); break;
            case Dictionary<string, object?> bySplit:
                foreach (var (split, value) in bySplit)
                    files[split] = value switch
                    {
                        string one => [path.Sibling(one)],
                        List<object?> many => FileList(many, path, where),
                        _ => throw new WrenException($"{where}: data_files.{split} must be a file or a list of files"),
                    };
                break;
            default: throw new WrenException($"{where}: data_files must be a file, a list, or split: file(s)");
        }
        if (files.Count == 0 && c.GetValueOrDefault("dataset_path") is string folder && LocalFolder(folder, path) is { } local)
            foreach (var file in Directory.EnumerateFiles(local, "*.*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                string relative = Path.GetRelativePath(local, file);
                if (!TaskDocuments.IsDataFile(file)) continue;
                if (c.GetValueOrDefault("dataset_name") is string subset && Directory.Exists(Path.Combine(local, subset)) &&
                    !relative.StartsWith(subset + Path.DirectorySeparatorChar, StringComparison.Ordinal)) continue;
                var split = SplitFileName().Match(Path.GetFileName(file));
                if (!split.Success) continue;
                string splitName = split.Groups[1].Value;
                files[splitName] = [.. files.GetValueOrDefault(splitName) ?? [], new TaskPath(file, false)];
            }
        foreach (var given in data.Where(d => d.Task == name))
        {
            string split = given.Split ?? (c.GetValueOrDefault("test_split") ?? c.GetValueOrDefault("validation_split")) as string
                ?? throw new WrenException($"{where}: no evaluation split for --data {name}=…");
            files[split] = [new TaskPath(Path.GetFullPath(given.File), false)];
        }
        return files;
    }

    static List<TaskPath> FileList(List<object?> many, TaskPath path, string where) =>
        many.Select(f => f is string s ? path.Sibling(s)
            : throw new WrenException($"{where}: data_files entries must be file names")).ToList();

    static string? LocalFolder(string datasetPath, TaskPath path)
    {
        if (Directory.Exists(datasetPath)) return datasetPath;
        if (!path.Shipped && path.Sibling(datasetPath).Path is var beside && Directory.Exists(beside)) return beside;
        return null;
    }

    [GeneratedRegex(@"^(train|validation|test|dev|val)([-_.].*)?\.(jsonl|json|parquet)$")]
    private static partial Regex SplitFileName();
}
