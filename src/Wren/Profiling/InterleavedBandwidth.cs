namespace Wren.Profiling;

/// <summary>
/// Timed runs with the copy bandwidth measured between them, so the roofline that normalizes the runs is the machine's
/// bandwidth while they ran: on the shared VMs of issue 12 the same probe read 62–85 GB/s on one day and 8–12 GB/s on
/// another, so a bandwidth cached on another day makes a roofline ratio meaningless. Probes and runs alternate and the
/// best of each is taken (contention only ever slows either down).
/// </summary>
/// <param name="RunSeconds">Each run's seconds, in the order they ran.</param>
/// <param name="CopyBytesPerSecond">The best copy bandwidth (bytes read + written per second) of the probes between the runs.</param>
public sealed record InterleavedBandwidth(IReadOnlyList<double> RunSeconds, double CopyBytesPerSecond)
{
    /// <summary>Copy-probe size: far larger than any cache, small enough to repeat between decode runs (256 MiB).</summary>
    public const long ProbeBytes = 256L << 20;

    /// <summary>The fastest run, seconds.</summary>
    public double BestSeconds => RunSeconds.Min();

    /// <summary>Seconds to read <paramref name="bytes"/> once at <see cref="CopyBytesPerSecond"/>: a decode step's roofline.</summary>
    public double Roofline(long bytes) => bytes / CopyBytesPerSecond;

    /// <summary>
    /// <paramref name="repeats"/> rounds of one copy-bandwidth probe (<see cref="DeviceFacts.CopyBandwidth"/> of
    /// <see cref="ProbeBytes"/>) followed by one timed <paramref name="run"/> (which returns its own seconds).
    /// </summary>
    public static InterleavedBandwidth Measure(Func<double> run, int repeats) =>
        Measure(run, repeats, () => DeviceFacts.CopyBandwidth(ProbeBytes));

    /// <summary>
    /// <see cref="Measure(Func{double}, int)"/> with the bandwidth probe given (bytes per second; tests use a synthetic one).
    /// </summary>
    internal static InterleavedBandwidth Measure(Func<double> run, int repeats, Func<double> copyBandwidth)
    {
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "at least one run");
        var seconds = new List<double>(repeats);
        double bandwidth = 0;
        for (int i = 0; i < repeats; i++)
        {
            bandwidth = Math.Max(bandwidth, copyBandwidth());
            seconds.Add(run());
        }
        return new InterleavedBandwidth(seconds, bandwidth);
    }
}
