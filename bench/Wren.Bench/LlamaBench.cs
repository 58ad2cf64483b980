using System.Diagnostics;
using System.Text.Json;

namespace Wren.Bench;

/// <summary>
/// llama.cpp's <c>llama-bench</c> (a binary built from its public source; docs/benchmarks.md says how) run on a GGUF of
/// the same shape as a Wren model, for side-by-side rows: decode ms/token after a context (<c>-p 0 -n N -d C</c>) and
/// prefill tokens/s (<c>-p N -n 0</c>), each the best of its repetitions as Wren's rows are. CPU only (<c>-ngl 0</c>),
/// the same thread count as Wren.
/// </summary>
sealed class LlamaBench(string binary, int threads)
{
    /// <summary>Best seconds per generated token over <paramref name="repeats"/> runs of <paramref name="tokens"/> tokens
    /// after a <paramref name="depth"/>-token context.</summary>
    public double DecodeSecondsPerToken(string gguf, int depth, int tokens, int repeats) =>
        BestSeconds(gguf, ["-p", "0", "-n", $"{tokens}", "-d", $"{depth}"], repeats) / tokens;

    /// <summary>Best prompt-processing tokens per second over <paramref name="repeats"/> runs of <paramref name="tokens"/>
    /// tokens (llama-bench's ppN).</summary>
    public double PrefillTokensPerSecond(string gguf, int tokens, int repeats) =>
        tokens / BestSeconds(gguf, ["-p", $"{tokens}", "-n", "0"], repeats);

    double BestSeconds(string gguf, string[] test, int repeats)
    {
        var start = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in (string[])["-m", gguf, "-t", $"{threads}", "-ngl", "0", "-r", $"{repeats}", "-o", "json", .. test])
            start.ArgumentList.Add(a);
        using var process = Start(start);
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{binary} exited with {process.ExitCode}: {stderr.Result.Trim().Split('\n')[^1]}");
        try
        {
            using var json = JsonDocument.Parse(stdout);
            return json.RootElement[0].GetProperty("samples_ns").EnumerateArray().Min(s => s.GetDouble()) / 1e9;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            throw new InvalidOperationException($"{binary} did not print llama-bench's JSON results ({e.Message})");
        }
    }

    Process Start(ProcessStartInfo start)
    {
        try { return Process.Start(start) ?? throw new InvalidOperationException($"cannot start {binary}"); }
        catch (System.ComponentModel.Win32Exception e) { throw new InvalidOperationException($"cannot run {binary}: {e.Message}"); }
    }
}
