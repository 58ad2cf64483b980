using System.Diagnostics;

namespace Wren.Cli.Commands;

/// <summary>
/// Fetches a public-domain English text packaged by Debian (default: the Jargon File, <c>jargon-text</c>) into
/// <c>~/.wren/corpora/</c> with <c>apt-get download</c> + <c>dpkg-deb -x</c>: no installation, no root needed unless
/// the package lists must be refreshed first. Idempotent: an unpacked corpus is reused.
/// </summary>
internal static class DebianCorpus
{
    public sealed record Package(string Name, string File, string Description);

    public static readonly Package Jargon = new("jargon-text", "usr/share/doc/jargon-text/jargon.txt.gz",
                                                "the Jargon File 4.4.7 (public domain, 1.7 MB)");

    public static string Fetch(Package package, Action<string> say)
    {
        string home = Environment.GetEnvironmentVariable("WREN_HOME") is { Length: > 0 } custom ? custom
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".wren");
        string folder = Path.Combine(home, "corpora", package.Name), file = Path.Combine(folder, package.File);
        if (File.Exists(file)) return file;
        string download = folder + ".download";
        if (Directory.Exists(download)) Directory.Delete(download, recursive: true);
        Directory.CreateDirectory(download);
        say($"downloading Debian package {package.Name}: {package.Description}");
        if (!Run("apt-get", ["download", package.Name], download))
        {
            if (Environment.UserName != "root" && !Run("id", ["-u"], download, expect: "0"))
                throw new WrenException($"apt-get could not download {package.Name}; run 'sudo apt-get update' once, " +
                                        "or pass your own text with --corpus");
            say("refreshing the package lists (apt-get update)");
            if (!Run("apt-get", ["update"], download) || !Run("apt-get", ["download", package.Name], download))
                throw new WrenException($"apt-get could not download {package.Name} (no package registry reachable?); " +
                                        "pass your own text with --corpus");
        }
        var deb = Directory.GetFiles(download, "*.deb").SingleOrDefault()
                  ?? throw new WrenException($"apt-get download {package.Name} produced no .deb");
        string unpacked = folder + ".unpack";
        if (Directory.Exists(unpacked)) Directory.Delete(unpacked, recursive: true);
        if (!Run("dpkg-deb", ["-x", deb, unpacked], download)) throw new WrenException($"dpkg-deb could not unpack {deb}");
        if (!File.Exists(Path.Combine(unpacked, package.File))) throw new WrenException($"{package.Name} has no {package.File}");
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.Move(unpacked, folder);   // the corpus appears whole or not at all
        Directory.Delete(download, recursive: true);
        return file;
    }

    static bool Run(string program, string[] arguments, string directory, string? expect = null)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        try
        {
            using var process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.StandardError.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 && (expect is null || output.Trim() == expect);
        }
        catch (System.ComponentModel.Win32Exception) { return false; }   // the program is not installed
    }
}
