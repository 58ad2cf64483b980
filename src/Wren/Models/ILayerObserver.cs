using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>
/// Called around every decoder layer of every forward while installed with <see cref="HybridForCausalLM.Observe"/>:
/// one hook for per-layer timing and dumps (llama.cpp's <c>cb(tensor, name, layer)</c>).
/// </summary>
public interface ILayerObserver
{
    /// <summary>Layer <paramref name="layer"/> is about to run.</summary>
    void Entering(int layer);

    /// <summary>Layer <paramref name="layer"/> produced <paramref name="output"/> [B, T, H] (valid only during the call).</summary>
    void Left(int layer, Tensor output);
}
