#include "flowforce/flow/Architecture.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <set>
#include <sstream>
#include <stdexcept>

namespace flowforce {

namespace {

// Sizes beyond these are certainly corrupt files, not models (checked before anything is allocated).
constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxHidden = 1 << 16;
constexpr int64_t kMaxComponents = 1 << 12;
constexpr size_t kMaxLayers = 1 << 12;
constexpr int kMaxInversionDepth = 8;

// Below this distance from the ends of [0,1] the exponential ramp's sigmoid is 0 (or 1) in double
// precision for every sharpness s >= 746 * guard (exp(-s / t) underflows). Shared with Transforms.cpp
// through TransformSpec::validate: the sharpness must not go below it.
constexpr double kEdgeGuard = 1e-5;

std::invalid_argument bad(const std::string& what) { return std::invalid_argument(what); }

/** An integer of type T from a JSON number: an integer within T's range, or a float with an integral
 *  value within it (nlohmann's get<T> would convert 1e300 or 2.5 without a word: undefined or truncated). */
template <class T>
T integerAs(const nlohmann::json& v, const char* key, const std::string& where) {
    auto out = [&] {
        return bad(where + ": '" + key + "' must be an integer within " + std::to_string(std::numeric_limits<T>::min()) + ".." +
                   std::to_string(std::numeric_limits<T>::max()) + " (got " + v.dump().substr(0, 40) + ")");
    };
    if (v.is_number_unsigned()) {
        const auto u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) throw out();
        return static_cast<T>(u);
    }
    if (v.is_number_integer()) {
        const auto i = v.get<int64_t>();
        if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) || i > static_cast<int64_t>(std::numeric_limits<T>::max()))
            throw out();
        return static_cast<T>(i);
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        // T's range as doubles: [min, max + 1) (max itself may round up to a power of two)
        const double lo = static_cast<double>(std::numeric_limits<T>::min());
        const double hi = -2.0 * static_cast<double>(std::numeric_limits<T>::min() / 2);
        if (!(std::isfinite(d) && d == std::floor(d) && d >= lo && d < hi)) throw out();
        return static_cast<T>(d);
    }
    throw bad(where + ": '" + key + "' has the wrong type (" + v.dump().substr(0, 40) + ")");
}

template <class T>
T getAs(const nlohmann::json& j, const char* key, const T& fallback, const std::string& where) {
    if (!j.contains(key)) return fallback;
    const auto& v = j.at(key);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        return integerAs<T>(v, key, where);
    } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
        if (!v.is_array()) throw bad(where + ": '" + key + "' must be a list of integers");
        T out;
        for (const auto& e : v) out.push_back(integerAs<int64_t>(e, key, where));
        return out;
    } else {
        try {
            return v.get<T>();
        } catch (const nlohmann::json::exception&) {
            throw bad(where + ": '" + key + "' has the wrong type (" + v.dump().substr(0, 40) + ")");
        }
    }
}

double finite(double v, const std::string& what) {
    if (!std::isfinite(v)) throw bad(what + " must be finite");
    return v;
}

std::vector<int64_t> indices(const nlohmann::json& j, const char* key, int64_t dim, const std::string& where) {
    if (!j.contains(key) || !j.at(key).is_array()) throw bad(where + ": '" + key + "' must be a list of dimension indices");
    std::vector<int64_t> v;
    for (const auto& e : j.at(key)) {
        if (!e.is_number_integer()) throw bad(where + ": '" + key + "' must hold integers");
        const auto i = e.get<int64_t>();
        if (i < 0 || i >= dim)
            throw bad(where + ": " + key + " index " + std::to_string(i) + " outside 0.." + std::to_string(dim - 1));
        v.push_back(i);
    }
    return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Transforms

double unimodalSharpness(int beta) {
    // The bump density sigma'(t) is symmetric about t = 1/2; it is unimodal while its curvature there is
    // negative. The boundaries, from d^3 sigma / dt^3 (1/2) = 0, solved numerically (a test checks them).
    if (beta == 1) return 0.8656721;
    if (beta == 2) return 0.3052033;
    throw bad("smooth mixture: beta must be 1 or 2");
}

void TransformSpec::validate() {
    if (kind == Kind::Smooth) {
        auto& o = smooth;
        if (o.components < 1 || o.components > kMaxComponents)
            throw bad("smooth mixture: components must lie in 1.." + std::to_string(kMaxComponents));
        if (o.beta != 1 && o.beta != 2) throw bad("smooth mixture: beta must be 1 or 2");
        if (o.monomialOrder < 1 || o.monomialOrder > 16) throw bad("smooth mixture: monomial order must lie in 1..16");
        if (o.sharpnessMin == 0.0) o.sharpnessMin = unimodalSharpness(o.beta);
        if (!(o.sharpnessMin >= 746.0 * kEdgeGuard && o.sharpnessMin <= 1e3))
            throw bad("smooth mixture: sharpness_min must lie in [0.00746, 1000]");
        if (!(o.sharpnessSpan >= 0.0 && o.sharpnessSpan <= 1e3))
            throw bad("smooth mixture: sharpness_span must lie in [0, 1000]");
        if (!(o.scale > 0.0 && o.scale <= 1e3)) throw bad("smooth mixture: scale (nominal concentration) must lie in (0, 1000]");
        if (circular && o.scale < 1.0) throw bad("smooth mixture: on the circle the concentration (scale) must be >= 1");
        if (!(o.logScaleBound >= 0.0 && o.logScaleBound <= 5.0)) throw bad("smooth mixture: log_scale_bound must lie in [0, 5]");
        if (!(o.minIdentity > 0.0 && o.minIdentity < 1.0)) throw bad("smooth mixture: min_identity must lie in (0, 1)");
    } else {
        const auto& o = spline;
        if (o.bins < 1 || o.bins > kMaxComponents) throw bad("spline: bins must lie in 1.." + std::to_string(kMaxComponents));
        if (!(o.minBinWidth > 0.0 && o.minBinHeight > 0.0) || o.minBinWidth * static_cast<double>(o.bins) >= 1.0 ||
            o.minBinHeight * static_cast<double>(o.bins) >= 1.0)
            throw bad("spline: minimal bin width/height must be positive, and times bins below 1");
        if (!(o.minDerivative > 0.0 && o.minDerivative < 1e3)) throw bad("spline: min_derivative must lie in (0, 1000)");
    }
}

TransformSpec TransformSpec::fromJson(const nlohmann::json& config, std::optional<bool> circular) {
    if (!config.is_object()) throw bad("transform: expected a JSON object");
    const std::string where = "transform";
    const std::string type = getAs<std::string>(config, "type", "", where);
    TransformSpec t;
    t.circular = circular.value_or(getAs<bool>(config, "circular", false, where));
    if (type == "smooth") {
        for (const char* legacy : {"min_density", "min_alpha", "max_alpha"})
            if (config.contains(legacy))
                throw bad(std::string("smooth transform: '") + legacy +
                          "' belongs to the clamped parameterization of FlowForce 0.1 (model format 1), which this "
                          "version no longer evaluates: retrain the model");
        t.kind = Kind::Smooth;
        auto& o = t.smooth;
        o.components = getAs<int64_t>(config, "components", o.components, where);
        const auto ramp = getAs<std::string>(config, "ramp", "exponential", where);
        if (ramp == "exponential") o.ramp = RampType::Exponential;
        else if (ramp == "monomial") o.ramp = RampType::Monomial;
        else throw bad("unknown ramp '" + ramp + "' (exponential or monomial)");
        o.beta = getAs<int>(config, "beta", o.beta, where);
        o.monomialOrder = getAs<int>(config, "order", o.monomialOrder, where);
        o.sharpnessMin = finite(getAs<double>(config, "sharpness_min", o.sharpnessMin, where), "sharpness_min");
        o.sharpnessSpan = finite(getAs<double>(config, "sharpness_span", o.sharpnessSpan, where), "sharpness_span");
        o.scale = finite(getAs<double>(config, "scale", o.scale, where), "scale");
        o.logScaleBound = finite(getAs<double>(config, "log_scale_bound", o.logScaleBound, where), "log_scale_bound");
        o.minIdentity = finite(getAs<double>(config, "min_identity", o.minIdentity, where), "min_identity");
    } else if (type == "spline") {
        t.kind = Kind::Spline;
        auto& o = t.spline;
        o.bins = getAs<int64_t>(config, "bins", o.bins, where);
        o.minBinWidth = finite(getAs<double>(config, "min_bin_width", o.minBinWidth, where), "min_bin_width");
        o.minBinHeight = finite(getAs<double>(config, "min_bin_height", o.minBinHeight, where), "min_bin_height");
        o.minDerivative = finite(getAs<double>(config, "min_derivative", o.minDerivative, where), "min_derivative");
    } else {
        throw bad("unknown transform type '" + type + "' (smooth or spline)");
    }
    t.validate();
    return t;
}

nlohmann::json TransformSpec::toJson() const {
    if (kind == Kind::Spline)
        return {{"type", "spline"},
                {"circular", circular},
                {"bins", spline.bins},
                {"min_bin_width", spline.minBinWidth},
                {"min_bin_height", spline.minBinHeight},
                {"min_derivative", spline.minDerivative}};
    const auto& o = smooth;
    nlohmann::json j{{"type", "smooth"},
                     {"circular", circular},
                     {"components", o.components},
                     {"ramp", o.ramp == RampType::Exponential ? "exponential" : "monomial"},
                     {"scale", o.scale},
                     {"log_scale_bound", o.logScaleBound},
                     {"min_identity", o.minIdentity}};
    if (o.ramp == RampType::Exponential) {
        j["beta"] = o.beta;
        j["sharpness_min"] = o.sharpnessMin;
        j["sharpness_span"] = o.sharpnessSpan;
    } else {
        j["order"] = o.monomialOrder;
    }
    return j;
}

int64_t TransformSpec::numParams() const {
    if (kind == Kind::Spline) return 3 * spline.bins + (circular ? 0 : 1);
    return (smooth.ramp == RampType::Exponential ? 5 : 4) * smooth.components;
}

std::vector<ParameterHead> TransformSpec::heads() const {
    if (kind == Kind::Spline) return {{"params", numParams()}};
    const int64_t K = smooth.components;
    if (smooth.ramp == RampType::Exponential) return {{"weights", K}, {"sharpness", K}, {"shape", 3 * K}};
    return {{"weights", K}, {"shape", 3 * K}};
}

// ---------------------------------------------------------------------------------------------
// Layers

Activation activationFromName(const std::string& name) {
    if (name == "silu" || name == "swish") return Activation::SiLU;
    if (name == "sin") return Activation::Sin;
    if (name == "tanh") return Activation::Tanh;
    if (name == "relu") return Activation::ReLU;
    throw bad("unknown activation '" + name + "' (silu, sin, tanh or relu)");
}

std::string activationName(Activation a) {
    switch (a) {
        case Activation::SiLU: return "silu";
        case Activation::Sin: return "sin";
        case Activation::Tanh: return "tanh";
        case Activation::ReLU: return "relu";
    }
    return "silu";
}

ConditionerHeads conditionerHeadsFromName(const std::string& name) {
    if (name == "separate") return ConditionerHeads::Separate;
    if (name == "shared") return ConditionerHeads::Shared;
    throw bad("unknown conditioner heads '" + name + "' (separate or shared)");
}

std::string conditionerHeadsName(ConditionerHeads h) { return h == ConditionerHeads::Separate ? "separate" : "shared"; }

std::vector<ParameterHead> CouplingSpec::networks() const {
    const auto h = transform.heads();
    if (heads == ConditionerHeads::Shared || h.size() == 1) return {{"conditioner", transform.numParams()}};
    std::vector<ParameterHead> nets;
    for (const auto& p : h) nets.push_back({"conditioner_" + p.name, p.count});
    return nets;
}

int64_t CouplingSpec::networkInputs(const std::vector<bool>& circularFlags) const {
    int64_t n = 0;
    for (auto i : conditioning) n += circularFlags[static_cast<size_t>(i)] ? 2 : 1;
    return n;
}

nlohmann::json LayerSpec::toJson() const {
    if (kind == Kind::Inverted) return {{"type", "inverted"}, {"layer", inner->toJson()}};
    if (kind == Kind::Box) return {{"type", "box"}, {"low", box.low}, {"high", box.high}};
    auto t = coupling.transform.toJson();
    t.erase("circular");  // follows from the flow's topology
    return {{"type", "coupling"},
            {"conditioning", coupling.conditioning},
            {"transformed", coupling.transformed},
            {"transform", t},
            {"conditioner",
             {{"hidden", coupling.hidden},
              {"activation", activationName(coupling.activation)},
              {"heads", conditionerHeadsName(coupling.heads)}}},
            {"invert_transform", coupling.invertTransform}};
}

namespace {

LayerSpec parseLayer(const nlohmann::json& j, const std::vector<bool>& circular, const std::string& where, int depth) {
    if (!j.is_object()) throw bad(where + ": expected a JSON object");
    const auto dim = static_cast<int64_t>(circular.size());
    const auto type = getAs<std::string>(j, "type", "", where);
    LayerSpec l;
    if (type == "inverted") {
        if (depth >= kMaxInversionDepth) throw bad(where + ": inverted layers nested too deeply");
        if (!j.contains("layer")) throw bad(where + ": inverted layer without 'layer'");
        l.kind = LayerSpec::Kind::Inverted;
        l.inner = std::make_shared<LayerSpec>(parseLayer(j.at("layer"), circular, where, depth + 1));
        return l;
    }
    if (type == "box") {
        l.kind = LayerSpec::Kind::Box;
        l.box.low = getAs<std::vector<double>>(j, "low", {}, where);
        l.box.high = getAs<std::vector<double>>(j, "high", {}, where);
        if (static_cast<int64_t>(l.box.low.size()) != dim || static_cast<int64_t>(l.box.high.size()) != dim)
            throw bad(where + ": box low and high need the flow's dimension " + std::to_string(dim));
        for (int64_t i = 0; i < dim; ++i) {
            const double lo = l.box.low[static_cast<size_t>(i)], hi = l.box.high[static_cast<size_t>(i)];
            if (!(std::isfinite(lo) && std::isfinite(hi) && hi > lo))
                throw bad(where + ": box needs finite high > low in every dimension");
        }
        return l;
    }
    if (type != "coupling") throw bad(where + ": unknown layer type '" + type + "' (coupling, inverted or box)");
    auto& c = l.coupling;
    c.conditioning = indices(j, "conditioning", dim, where);
    c.transformed = indices(j, "transformed", dim, where);
    if (c.conditioning.empty() || c.transformed.empty())
        throw bad(where + ": a coupling needs at least one conditioning and one transformed dimension");
    std::set<int64_t> seen;
    for (auto i : c.conditioning)
        if (!seen.insert(i).second) throw bad(where + ": dimension " + std::to_string(i) + " appears twice among conditioning");
    for (auto i : c.transformed)
        if (!seen.insert(i).second)
            throw bad(where + ": dimension " + std::to_string(i) + " appears twice among conditioning/transformed");
    const bool circ = circular[static_cast<size_t>(c.transformed[0])];
    for (auto i : c.transformed)
        if (circular[static_cast<size_t>(i)] != circ)
            throw bad(where + ": transformed dimensions must all be circular or all be non-circular");
    if (!j.contains("transform")) throw bad(where + ": coupling without 'transform'");
    try {
        c.transform = TransformSpec::fromJson(j.at("transform"), circ);
    } catch (const std::invalid_argument& e) {
        throw bad(where + ": " + e.what());
    }
    const nlohmann::json cond = j.contains("conditioner") ? j.at("conditioner") : nlohmann::json::object();
    if (!cond.is_object()) throw bad(where + ": 'conditioner' must be a JSON object");
    c.hidden = getAs<std::vector<int64_t>>(cond, "hidden", c.hidden, where);
    if (c.hidden.size() > 64) throw bad(where + ": too many hidden layers");
    for (auto h : c.hidden)
        if (h < 1 || h > kMaxHidden) throw bad(where + ": hidden sizes must lie in 1.." + std::to_string(kMaxHidden));
    c.activation = activationFromName(getAs<std::string>(cond, "activation", "silu", where));
    c.heads = conditionerHeadsFromName(getAs<std::string>(cond, "heads", "shared", where));
    c.invertTransform = getAs<bool>(j, "invert_transform", false, where);
    return l;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Embedding and flow

namespace {
/** Rows with a bond reference and rows with an angle reference: the numbers of bonds and angles. */
std::pair<size_t, size_t> bondAndAngleCounts(const ZMatrix& z) {
    size_t nb = 0, na = 0;
    for (const auto& r : z.rows) nb += r[1] >= 0, na += r[2] >= 0;
    return {nb, na};
}
}  // namespace

EmbeddingSpec EmbeddingSpec::fromJson(const nlohmann::json& config) {
    const std::string where = "internal coordinates";
    if (!config.is_object() || getAs<std::string>(config, "type", "", where) != "internal_coordinates")
        throw bad("flow: unknown embedding type (internal_coordinates)");
    if (!config.contains("zmatrix")) throw bad(where + ": config lacks 'zmatrix'");
    EmbeddingSpec e;
    e.zmatrix = ZMatrix::fromJson(config.at("zmatrix"));
    auto range = [&](const char* key, std::array<double, 2> fallback) {
        if (!config.contains(key)) return fallback;
        const auto& j = config.at(key);
        if (!j.is_array() || j.size() != 2 || !j[0].is_number() || !j[1].is_number())
            throw bad(where + ": '" + std::string(key) + "' must be [lo, hi]");
        return std::array<double, 2>{j[0].get<double>(), j[1].get<double>()};
    };
    e.bondRange = range("bond_range", e.bondRange);
    e.angleRange = range("angle_range", e.angleRange);
    const auto boundary = getAs<std::string>(config, "boundary", "linear", where);
    if (boundary == "linear") e.boundary = Boundary::Linear;
    else if (boundary == "wall") e.boundary = Boundary::Wall;
    else if (boundary == "gauss") e.boundary = Boundary::Gauss;
    else throw bad(where + ": boundary must be 'linear', 'wall' or 'gauss'");
    e.wallSharpness = finite(getAs<double>(config, "wall_sharpness", e.wallSharpness, where), "wall_sharpness");
    if (!(e.wallSharpness >= unimodalSharpness(1) && e.wallSharpness <= 100.0))
        throw bad(where + ": wall_sharpness must lie in [0.8657, 100] (below, the wall's density has spikes)");
    auto validBond = [](const std::array<double, 2>& r) { return r[0] >= 0.0 && r[1] > r[0] && std::isfinite(r[1]); };
    auto validAngle = [](const std::array<double, 2>& r) { return r[0] >= 0.0 && r[1] > r[0] && r[1] <= M_PI; };
    if (!validBond(e.bondRange)) throw bad(where + ": bond_range must be [lo, hi] nm with 0 <= lo < hi");
    if (!validAngle(e.angleRange)) throw bad(where + ": angle_range must be [lo, hi] rad with 0 <= lo < hi <= pi");
    const auto [nb, na] = bondAndAngleCounts(e.zmatrix);
    auto ranges = [&](const char* key, size_t count, auto valid, const char* rule) {
        std::vector<std::array<double, 2>> out;
        if (!config.contains(key)) return out;
        const auto& j = config.at(key);
        if (!j.is_array() || j.size() != count)
            throw bad(where + ": '" + std::string(key) + "' must list " + std::to_string(count) + " ranges [lo, hi], one per coordinate");
        for (size_t i = 0; i < count; ++i) {
            if (!j[i].is_array() || j[i].size() != 2 || !j[i][0].is_number() || !j[i][1].is_number())
                throw bad(where + ": '" + std::string(key) + "' entry " + std::to_string(i) + " must be [lo, hi]");
            const std::array<double, 2> r{j[i][0].get<double>(), j[i][1].get<double>()};
            if (!valid(r)) throw bad(where + ": '" + std::string(key) + "' entry " + std::to_string(i) + " must be " + rule);
            out.push_back(r);
        }
        return out;
    };
    e.bondRanges = ranges("bond_ranges", nb, validBond, "[lo, hi] nm with 0 <= lo < hi");
    e.angleRanges = ranges("angle_ranges", na, validAngle, "[lo, hi] rad with 0 <= lo < hi <= pi");
    if (e.boundary == Boundary::Gauss && ((nb > 0 && e.bondRanges.empty()) || (na > 0 && e.angleRanges.empty())))
        throw bad(where + ": boundary 'gauss' needs 'bond_ranges' and 'angle_ranges' ([mean - std, mean + std] per "
                          "coordinate; train --ic-ranges gauss fits them)");
    return e;
}

namespace {
struct Vec {
    double x, y, z;
};
Vec sub(const double* p, int64_t a, int64_t b) { return {p[3 * a] - p[3 * b], p[3 * a + 1] - p[3 * b + 1], p[3 * a + 2] - p[3 * b + 2]}; }
double dot(const Vec& a, const Vec& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
Vec cross(const Vec& a, const Vec& b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
std::string num(double v) {
    std::ostringstream s;
    s.precision(4);
    s << v;
    return s.str();
}
}  // namespace

SupportViolation EmbeddingSpec::checkSupport(const double* x) const {
    SupportViolation v;
    const int64_t n = numAtoms();
    for (int64_t i = 0; i < 3 * n; ++i)
        if (!std::isfinite(x[i])) {
            v.coordinate = i;
            v.description = "coordinate " + std::string(1, "xyz"[i % 3]) + " of particle " + std::to_string(i / 3) + " is not finite";
            return v;
        }
    const bool gauss = boundary == Boundary::Gauss;  // support: bonds > 0, angles in (0, pi)
    int64_t bond = 0, angle = 0;
    for (const auto& r : zmatrix.rows)
        if (r[1] >= 0) {
            const Vec d = sub(x, r[0], r[1]);
            const double len = std::sqrt(dot(d, d));
            const auto bondRange = bondRangeOf(static_cast<size_t>(bond));
            if (gauss ? !(len > 0.0) : !(len >= bondRange[0] && len <= bondRange[1])) {
                v.coordinate = bond;
                v.description = "bond " + std::to_string(bond) + " (atoms " + std::to_string(r[0]) + "-" + std::to_string(r[1]) +
                                ") is " + num(len) + " nm, " +
                                (gauss ? std::string("not positive")
                                       : "outside the model's range [" + num(bondRange[0]) + ", " + num(bondRange[1]) + "] nm");
                return v;
            }
            ++bond;
        }
    for (const auto& r : zmatrix.rows)
        if (r[2] >= 0) {
            const Vec u = sub(x, r[0], r[1]), w = sub(x, r[2], r[1]);
            const Vec c = cross(u, w);
            const double th = std::atan2(std::sqrt(dot(c, c)), dot(u, w));
            const auto angleRange = angleRangeOf(static_cast<size_t>(angle));
            if (gauss ? !(th > 0.0 && th < M_PI) : !(th >= angleRange[0] && th <= angleRange[1])) {
                v.coordinate = bond + angle;
                v.description = "angle " + std::to_string(angle) + " (atoms " + std::to_string(r[0]) + "-" + std::to_string(r[1]) +
                                "-" + std::to_string(r[2]) + ") is " + num(th) + " rad, " +
                                (gauss ? std::string("not inside (0, pi)")
                                       : "outside the model's range [" + num(angleRange[0]) + ", " + num(angleRange[1]) + "] rad");
                return v;
            }
            ++angle;
        }
    return v;
}

const char* EmbeddingSpec::boundaryName(Boundary b) {
    switch (b) {
        case Boundary::Wall: return "wall";
        case Boundary::Gauss: return "gauss";
        default: return "linear";
    }
}

std::vector<std::array<double, 2>> EmbeddingSpec::coordinateRanges() const {
    const auto [nb, na] = bondAndAngleCounts(zmatrix);
    std::vector<std::array<double, 2>> out;
    for (size_t i = 0; i < nb; ++i) out.push_back(bondRangeOf(i));
    for (size_t i = 0; i < na; ++i) out.push_back(angleRangeOf(i));
    return out;
}

nlohmann::json EmbeddingSpec::toJson() const {
    nlohmann::json j{{"type", "internal_coordinates"},
                     {"zmatrix", zmatrix.toJson()},
                     {"bond_range", {bondRange[0], bondRange[1]}},
                     {"angle_range", {angleRange[0], angleRange[1]}},
                     {"boundary", boundaryName(boundary)}};
    if (boundary == Boundary::Wall) j["wall_sharpness"] = wallSharpness;
    auto list = [](const std::vector<std::array<double, 2>>& ranges) {
        nlohmann::json l = nlohmann::json::array();
        for (const auto& r : ranges) l.push_back({r[0], r[1]});
        return l;
    };
    if (!bondRanges.empty()) j["bond_ranges"] = list(bondRanges);
    if (!angleRanges.empty()) j["angle_ranges"] = list(angleRanges);
    return j;
}

ArchitectureSpec ArchitectureSpec::fromJson(const nlohmann::json& architecture) {
    if (!architecture.is_object()) throw bad("flow: the architecture must be a JSON object");
    ArchitectureSpec a;
    const std::string where = "flow";
    if (!architecture.contains("dim")) throw bad("flow: the architecture has no 'dim'");
    a.dim = getAs<int64_t>(architecture, "dim", 0, where);
    if (a.dim < 1 || a.dim > kMaxDim) throw bad("flow: dim must lie in 1.." + std::to_string(kMaxDim));
    a.circular = getAs<std::vector<bool>>(architecture, "circular", std::vector<bool>(static_cast<size_t>(a.dim), false), where);
    if (static_cast<int64_t>(a.circular.size()) != a.dim) throw bad("flow: 'circular' needs dim entries");
    if (architecture.contains("embedding")) {
        a.embedding = EmbeddingSpec::fromJson(architecture.at("embedding"));
        const auto& z = a.embedding->zmatrix;
        if (3 * z.numAtoms() - 6 != a.dim)
            throw bad("flow: the embedding produces " + std::to_string(3 * z.numAtoms() - 6) + " coordinates but dim is " +
                      std::to_string(a.dim));
        // internal coordinates: bonds, angles (non-circular), then torsions (circular)
        const int64_t torsions = z.numAtoms() - 3;
        for (int64_t i = 0; i < a.dim; ++i)
            if (a.circular[static_cast<size_t>(i)] != (i >= a.dim - torsions))
                throw bad("flow: 'circular' does not match the embedding's torsions");
    }
    if (!architecture.contains("layers") || !architecture.at("layers").is_array()) throw bad("flow: 'layers' must be a list");
    const auto& layers = architecture.at("layers");
    if (layers.size() > kMaxLayers) throw bad("flow: too many layers");
    for (size_t i = 0; i < layers.size(); ++i)
        a.layers.push_back(parseLayer(layers[i], a.circular, "flow layer " + std::to_string(i), 0));
    return a;
}

nlohmann::json ArchitectureSpec::toJson() const {
    nlohmann::json layersJson = nlohmann::json::array();
    for (const auto& l : layers) layersJson.push_back(l.toJson());
    nlohmann::json j{{"dim", dim}, {"circular", circular}, {"layers", layersJson}};
    if (embedding) j["embedding"] = embedding->toJson();
    return j;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ArchitectureSpec::parameterShapes() const {
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (size_t i = 0; i < layers.size(); ++i) {
        std::string prefix = "layer" + std::to_string(i);
        const LayerSpec* l = &layers[i];
        while (l->kind == LayerSpec::Kind::Inverted) {
            prefix += ".inner";
            l = l->inner.get();
        }
        if (l->kind != LayerSpec::Kind::Coupling) continue;
        const auto& c = l->coupling;
        const auto d = static_cast<int64_t>(c.transformed.size());
        for (const auto& net : c.networks()) {
            int64_t in = c.networkInputs(circular);
            auto sizes = c.hidden;
            sizes.push_back(d * net.count);
            for (size_t k = 0; k < sizes.size(); ++k) {
                const std::string base = prefix + "." + net.name + ".linear" + std::to_string(k);
                shapes.push_back({base + ".weight", {sizes[k], in}});
                shapes.push_back({base + ".bias", {sizes[k]}});
                in = sizes[k];
            }
        }
    }
    return shapes;
}

int64_t ArchitectureSpec::parameterCount() const {
    int64_t n = 0;
    for (const auto& [name, shape] : parameterShapes()) {
        int64_t m = 1;
        for (auto s : shape) m *= s;
        n += m;
    }
    return n;
}

ArchitectureSpec validatedArchitecture(const ModelFile& model, const std::string& source) {
    ArchitectureSpec spec;
    try {
        spec = ArchitectureSpec::fromJson(model.architecture);
    } catch (const std::invalid_argument& e) {
        throw ModelFileError(source + ": invalid architecture: " + e.what());
    }
    auto str = [](const std::vector<int64_t>& v) {
        std::string s = "[";
        for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
        return s + "]";
    };
    const auto shapes = spec.parameterShapes();
    std::set<std::string> names;
    for (const auto& [name, shape] : shapes) {
        names.insert(name);
        auto it = model.tensors.find(name);
        if (it == model.tensors.end()) throw ModelFileError(source + ": weights '" + name + "' are missing");
        if (it->second.shape != shape)
            throw ModelFileError(source + ": weights '" + name + "' have shape " + str(it->second.shape) +
                                 " but the architecture needs " + str(shape));
        for (double v : it->second.values)
            if (!std::isfinite(v)) throw ModelFileError(source + ": weights '" + name + "' hold a non-finite value");
    }
    for (const auto& [name, t] : model.tensors)
        if (!names.count(name)) throw ModelFileError(source + ": tensor '" + name + "' does not belong to the architecture");
    return spec;
}

}  // namespace flowforce
