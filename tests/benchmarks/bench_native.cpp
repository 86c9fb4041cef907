// Google Benchmark suite of the native evaluator (build/bin/bench_native): one energy+force of the paper's
// smooth alanine-dipeptide Boltzmann generator (758,168 weights, untrained) in double and single precision,
// on one and two threads, per configuration at batch 64, energy only, and the weight-streaming limit of the
// same layout. `flowforce bench force` reports the same figures next to LibTorch and MD; this suite is for
// comparing builds and machines (--benchmark_format=json, --benchmark_repetitions=N).
#include "flowforce/flow/Flow.h"
#include "flowforce/flow/Molecular.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/flow/NativeFlow.h"

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

namespace {

using namespace flowforce;

/** The untrained paper-layout smooth flow, compiled once for every benchmark. */
std::shared_ptr<const NativeFlow> paperFlow() {
    static std::shared_ptr<const NativeFlow> flow = [] {
        torch::manual_seed(1);
        Flow f(boltzmannGeneratorArchitecture(ZMatrix::builtinAlanineDipeptide(), {{"type", "smooth"}, {"components", 8}}));
        f.to(torch::kFloat64);
        return NativeFlow::compile(toModelFile(f), "paper-layout smooth flow");
    }();
    return flow;
}

/** Configurations near a stretched chain that lies inside every bond and angle range of the model. */
std::vector<double> configurations(int64_t batch) {
    std::vector<double> x;
    for (int64_t b = 0; b < batch; ++b)
        for (int atom = 0; atom < 22; ++atom) {
            const double zig = (atom % 2) ? 0.05 : -0.05;
            x.insert(x.end(), {0.12 * atom + 1e-3 * static_cast<double>(b), zig + 0.01 * (atom % 3), 0.02 * (atom % 5)});
        }
    return x;
}

Precision precisionOf(int64_t arg) { return arg ? Precision::Single : Precision::Double; }

void BM_EnergyAndForce(benchmark::State& state) {
    NativeEvaluator eval(paperFlow(), precisionOf(state.range(0)), static_cast<int>(state.range(1)));
    auto x = configurations(1);
    std::vector<double> g(x.size());
    for (auto _ : state) benchmark::DoNotOptimize(eval.energyAndGradient(x.data(), g.data()));
    state.SetLabel(precisionName(eval.precision()) + ", " + std::to_string(eval.threads()) + " thread(s)");
}
BENCHMARK(BM_EnergyAndForce)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_EnergyOnly(benchmark::State& state) {
    NativeEvaluator eval(paperFlow(), precisionOf(state.range(0)));
    auto x = configurations(1);
    for (auto _ : state) benchmark::DoNotOptimize(eval.energy(x.data()));
    state.SetLabel(precisionName(eval.precision()));
}
BENCHMARK(BM_EnergyOnly)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Batch64(benchmark::State& state) {
    NativeEvaluator eval(paperFlow(), precisionOf(state.range(0)));
    auto x = configurations(64);
    std::vector<double> u(64), g(x.size());
    for (auto _ : state) eval.evaluate(64, x.data(), u.data(), g.data());
    state.SetItemsProcessed(state.iterations() * 64);  // configurations per second
    state.SetLabel(precisionName(eval.precision()) + ", per call of 64 configurations");
}
BENCHMARK(BM_Batch64)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_WeightStreamingLimit(benchmark::State& state) {
    NativeEvaluator eval(paperFlow(), precisionOf(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(eval.weightStreamingOnly(1));
    state.SetLabel(precisionName(eval.precision()) + ": the networks' products alone, forward and transposed");
}
BENCHMARK(BM_WeightStreamingLimit)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
