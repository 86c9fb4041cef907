#pragma once
// The model-file check of the fuzz target flowforce_fuzz_model and of the corpus test (test_fuzz_corpus):
// FlowForce model files (*.flow) through the LibTorch-free loader.
// Bytes -> parseModelFile (container) -> NativeFlow::compile (architecture, weights) -> the native
// evaluator (double and single precision) at a position inside the model's support, derived from the
// input's hash, so the evaluator's paths (transforms, inversions, the embedding) run on every model.
#include "FuzzCommon.h"

#include "flowforce/flow/Architecture.h"
#include "flowforce/flow/ModelFormat.h"
#include "flowforce/flow/NativeFlow.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace flowforce::fuzz {

namespace model_detail {

/** Places the atoms of a z-matrix from internal coordinates inside the support: bonds and angles
 *  strictly inside their ranges, torsions anywhere (NeRF construction in placement order). */
inline std::vector<double> positionInSupport(const EmbeddingSpec& e, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u01(0.05, 0.95), torsion(-M_PI, M_PI);
    const auto n = static_cast<size_t>(e.numAtoms());
    std::vector<double> x(3 * n, 0.0);
    auto at = [&](int64_t i) { return &x[3 * static_cast<size_t>(i)]; };
    std::vector<size_t> bondIndex, angleIndex;  // per row: the index of its bond / angle in the output order
    size_t nb = 0, na = 0;
    for (const auto& r : e.zmatrix.rows) bondIndex.push_back(r[1] >= 0 ? nb++ : 0), angleIndex.push_back(r[2] >= 0 ? na++ : 0);
    for (int64_t row : e.zmatrix.placementOrder()) {
        const auto& r = e.zmatrix.rows[static_cast<size_t>(row)];
        double* p = at(r[0]);
        const auto br = e.bondRangeOf(bondIndex[static_cast<size_t>(row)]);
        const auto ar = e.angleRangeOf(angleIndex[static_cast<size_t>(row)]);
        const double bond = br[0] + u01(rng) * (br[1] - br[0]);
        const double angle = ar[0] + u01(rng) * (ar[1] - ar[0]);
        if (r[1] < 0) continue;  // the origin
        const double* b = at(r[1]);
        if (r[2] < 0) {  // bond only: along x
            p[0] = b[0] + bond, p[1] = b[1], p[2] = b[2];
            continue;
        }
        const double* c = at(r[2]);
        // the third reference: the torsion atom, or a point off the b-c line for the frame row
        double dref[3];
        const double* d = r[3] >= 0 ? at(r[3]) : nullptr;
        if (!d) {
            dref[0] = c[0], dref[1] = c[1] + 1.0, dref[2] = c[2] + 0.5;
            // make sure it is not collinear with b-c
            d = dref;
        }
        const double tors = r[3] >= 0 ? torsion(rng) : 0.0;
        double bc[3] = {b[0] - c[0], b[1] - c[1], b[2] - c[2]};
        double lbc = std::sqrt(bc[0] * bc[0] + bc[1] * bc[1] + bc[2] * bc[2]);
        for (double& v : bc) v /= lbc;
        double cd[3] = {c[0] - d[0], c[1] - d[1], c[2] - d[2]};
        double nrm[3] = {cd[1] * bc[2] - cd[2] * bc[1], cd[2] * bc[0] - cd[0] * bc[2], cd[0] * bc[1] - cd[1] * bc[0]};
        double ln = std::sqrt(nrm[0] * nrm[0] + nrm[1] * nrm[1] + nrm[2] * nrm[2]);
        if (!(ln > 1e-9)) {  // collinear: any perpendicular
            const double alt[3] = {bc[1], -bc[0], 0.0};
            const double alt2[3] = {0.0, bc[2], -bc[1]};
            const double* a = std::fabs(bc[2]) < 0.9 ? alt : alt2;
            nrm[0] = a[0], nrm[1] = a[1], nrm[2] = a[2];
            ln = std::sqrt(nrm[0] * nrm[0] + nrm[1] * nrm[1] + nrm[2] * nrm[2]);
        }
        for (double& v : nrm) v /= ln;
        const double m[3] = {nrm[1] * bc[2] - nrm[2] * bc[1], nrm[2] * bc[0] - nrm[0] * bc[2], nrm[0] * bc[1] - nrm[1] * bc[0]};
        // p = b + bond * (-cos(angle) bc + sin(angle) (cos(t) m + sin(t) nrm))
        const double ca = std::cos(angle), sa = std::sin(angle), ct = std::cos(tors), st = std::sin(tors);
        for (int k = 0; k < 3; ++k) p[k] = b[k] + bond * (-ca * bc[k] + sa * (ct * m[k] + st * nrm[k]));
    }
    return x;
}

/** A data point of a flow without embedding: inside the first layer's box if it starts with one, else (0,1)^d. */
inline std::vector<double> pointInDomain(const ArchitectureSpec& spec, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u01(0.01, 0.99);
    std::vector<double> x(static_cast<size_t>(spec.dim));
    const LayerSpec* first = spec.layers.empty() ? nullptr : &spec.layers[0];
    for (size_t i = 0; i < x.size(); ++i) {
        if (first && first->kind == LayerSpec::Kind::Box)
            x[i] = first->box.low[i] + u01(rng) * (first->box.high[i] - first->box.low[i]);
        else
            x[i] = u01(rng);
    }
    return x;
}

}  // namespace model_detail

/** Loads the bytes as a model file; evaluates the model if it loads. Aborts on a finding. */
inline void checkModelBytes(const std::string& bytes) {
    using namespace model_detail;
    std::shared_ptr<const NativeFlow> flow;
    try {
        const ModelFile model = parseModelFile(bytes, "fuzz input");
        flow = NativeFlow::compile(model, "fuzz input");
        (void)modelTemperature(model, "fuzz input");
    } catch (const std::runtime_error& e) {  // ModelFileError
        fuzz::checkMessage(e.what(), "runtime_error");
        return;
    } catch (const std::invalid_argument& e) {
        fuzz::checkMessage(e.what(), "invalid_argument");
        return;
    } catch (const std::exception& e) {
        fuzz::finding(std::string("the model loader threw an undocumented exception: ") + e.what());
    }
    std::seed_seq seed(bytes.begin(), bytes.end());
    std::mt19937_64 rng(seed);
    const auto& spec = flow->spec();
    const std::vector<double> x = spec.embedding ? positionInSupport(*spec.embedding, rng) : pointInDomain(spec, rng);
    if (static_cast<int64_t>(x.size()) != flow->dataDim()) fuzz::finding("dataDim does not match the architecture");
    std::vector<double> gradient(x.size());
    for (Precision precision : {Precision::Double, Precision::Single}) {
        try {
            NativeEvaluator eval(flow, precision);
            if (!eval.checkSupport(x.data()).inside()) continue;  // the construction's rounding at a range edge
            (void)eval.energy(x.data());
            (void)eval.energyAndGradient(x.data(), gradient.data());
        } catch (const std::exception& e) {
            fuzz::finding(std::string("the native evaluator threw on a compiled model: ") + e.what());
        }
    }
}

}  // namespace flowforce::fuzz
