using System.Text;
using Wren.Checkpoints;

namespace Wren.Tests.Checkpoints;

/// <summary>Header errors say the true size and the whole key (issue 10), from headers written here byte by byte.</summary>
public class SafeTensorsHeaderTests
{
    static string File(string header, int dataBytes)
    {
        string path = Path.Combine(TestSupport.TempDir(), "model.safetensors");
        var json = Encoding.UTF8.GetBytes(header);
        using var stream = System.IO.File.Create(path);
        stream.Write(BitConverter.GetBytes((ulong)json.Length));
        stream.Write(json);
        stream.Write(new byte[dataBytes]);
        return path;
    }

    [Fact]
    public void A_shape_past_64_bit_byte_counts_reports_its_true_size()
    {
        // [2^40, 2^40] float32: 2^80 elements × 4 bytes = 2^82 = 4,835,703,278,458,516,698,824,704 bytes (wraps to 0 in 64 bits).
        string path = File("{\"x\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", 4);
        var error = Assert.Throws<WrenException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("needs 4835703278458516698824704 bytes but data_offsets span 4", error.Message);
    }

    [Theory]
    [InlineData(25)]
    [InlineData(200)]
    public void A_repeated_key_is_named_in_full(int length)
    {
        string key = "model.embed_tokens." + new string('w', length - 19);
        string entry = $"\"{key}\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        var error = Assert.Throws<WrenException>(() => SafeTensorsFile.Open(File($"{{{entry},{entry}}}", 4)));
        Assert.Contains($"duplicate key '{key}'", error.Message);
    }

    [Fact]
    public void A_repeated_key_past_200_characters_is_cut_there()
    {
        string key = new('k', 250);
        string entry = $"\"{key}\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        var error = Assert.Throws<WrenException>(() => SafeTensorsFile.Open(File($"{{{entry},{entry}}}", 4)));
        Assert.Contains($"duplicate key '{key[..200]}…'", error.Message);
    }
}
