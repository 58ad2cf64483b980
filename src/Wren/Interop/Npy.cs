using System.Text;
using System.Text.RegularExpressions;
using Wren.Common;

namespace Wren.Interop;

/// <summary>
/// NumPy .npy (format 1.0) for little-endian float32 arrays in C order: what <c>numpy.load</c> reads and what
/// reference implementations dump. Hand-written: the format is a 10-byte preamble, a Python-dict header and raw data.
/// </summary>
public static partial class Npy
{
    public static void WriteFloat32(string path, ReadOnlySpan<float> data, long[] shape)
    {
        if (shape.Aggregate(1L, (a, b) => a * b) != data.Length) throw new ArgumentException("shape does not match data length");
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        int total = 10 + dict.Length + 1;
        int padded = (total + 63) / 64 * 64;                       // header padded so data starts 64-byte aligned
        string header = dict + new string(' ', padded - total) + "\n";
        string temp = AtomicFile.TempPath(path);
        using (var stream = File.Create(temp))
        {
            stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
            stream.Write(BitConverter.GetBytes((ushort)header.Length));
            stream.Write(Encoding.ASCII.GetBytes(header));
            stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data));
        }
        File.Move(temp, path, overwrite: true);
    }

    public static (float[] Data, long[] Shape) ReadFloat32(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 10 || bytes[0] != 0x93 || Encoding.ASCII.GetString(bytes, 1, 5) != "NUMPY")
            throw new WrenException($"{path}: not a .npy file");
        int major = bytes[6];
        int headerLength = major == 1 ? BitConverter.ToUInt16(bytes, 8) : BitConverter.ToInt32(bytes, 8);
        int start = major == 1 ? 10 : 12;
        string header = Encoding.ASCII.GetString(bytes, start, headerLength);
        if (!header.Contains("'<f4'") || header.Contains("'fortran_order': True"))
            throw new WrenException($"{path}: only little-endian float32 C-order arrays are supported ({header.Trim()})");
        var shapeText = ShapePattern().Match(header).Groups[1].Value;
        var shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                             .Select(long.Parse).ToArray();
        int dataStart = start + headerLength;
        var data = new float[(bytes.Length - dataStart) / 4];
        Buffer.BlockCopy(bytes, dataStart, data, 0, data.Length * 4);
        if (shape.Aggregate(1L, (a, b) => a * b) != data.Length) throw new WrenException($"{path}: data length does not match shape");
        return (data, shape);
    }

    [GeneratedRegex(@"'shape':\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
