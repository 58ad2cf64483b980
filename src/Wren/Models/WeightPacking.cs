using TorchSharp;
using Wren.Modules;
using static TorchSharp.torch;

namespace Wren.Models;

/// <summary>Copies a model into another weight precision for inference (<see cref="WeightPrecision"/>).</summary>
public static class WeightPacking
{
    /// <summary>
    /// A new model with the config of <paramref name="source"/>, fp32 activations, and its matrices stored as
    /// <paramref name="weights"/>: bf16 rounded, or int8, q4 or q4k quantized (<see cref="Linear.Quantize"/>); every other
    /// parameter is copied as fp32. The source stays usable (e.g. as the fp32 reference of an accuracy measurement).
    /// </summary>
    public static HybridForCausalLM Pack(HybridForCausalLM source, WeightPrecision weights)
    {
        var from = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        if (from.Keys.Any(n => n.EndsWith(".weight_scale", StringComparison.Ordinal)))
            throw new WrenException("the source model is already quantized; pack from its float32 or bfloat16 form");
        var target = new HybridForCausalLM(source.Config, new Placement(ScalarType.Float32, source.Placement.Device, weights));
        try
        {
            using var _ = no_grad();
            var to = target.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in to.Where(p => !p.Key.EndsWith(".weight_scale", StringComparison.Ordinal)))
            {
                if (to.GetValueOrDefault(name + "_scale") is { } scale)
                {
                    Linear.Quantize(from[name], parameter, scale);
                }
                else parameter.copy_(from[name]);
            }
            target.eval();
            return target;
        }
        catch
        {
            target.Dispose();
            throw;
        }
    }
}
