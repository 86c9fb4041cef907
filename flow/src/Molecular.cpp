#include "flowforce/flow/Molecular.h"

#include <cmath>
#include <numeric>

namespace flowforce {

namespace {
std::vector<int64_t> range(int64_t begin, int64_t end) {
    std::vector<int64_t> v(static_cast<size_t>(end - begin));
    std::iota(v.begin(), v.end(), begin);
    return v;
}
std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}
}  // namespace

nlohmann::json boltzmannGeneratorArchitecture(const ZMatrix& z, const nlohmann::json& transform,
                                              std::vector<int64_t> hidden, Activation activation, bool invertSmooth) {
    auto ic = std::make_shared<InternalCoordinateLayer>(z);
    auto embedding = ic->config();
    embedding["boundary"] = "wall";  // -log p rises smoothly to infinity at the ends of the bond and angle ranges
    const int64_t nb = ic->numBonds(), na = ic->numAngles(), nt = ic->numTorsions();
    const auto bonds = range(0, nb), angles = range(nb, nb + na), torsions = range(nb + na, nb + na + nt);
    std::vector<int64_t> t1, t2;  // torsion channels: alternate torsions
    for (size_t i = 0; i < torsions.size(); ++i) (i % 2 == 0 ? t1 : t2).push_back(torsions[i]);

    const bool invert = invertSmooth && transform.value("type", std::string()) == "smooth";
    auto coupling = [&](const std::vector<int64_t>& cond, const std::vector<int64_t>& trans) {
        return nlohmann::json{{"type", "coupling"},
                              {"conditioning", cond},
                              {"transformed", trans},
                              {"transform", transform},
                              {"conditioner",
                               {{"hidden", hidden}, {"activation", activationName(activation)}, {"heads", "separate"}}},
                              {"invert_transform", invert}};
    };
    // generative order (latent -> data)
    std::vector<nlohmann::json> generative;
    if (nt >= 2)
        for (int i = 0; i < 8; ++i) generative.push_back(i % 2 == 0 ? coupling(t1, t2) : coupling(t2, t1));
    if (nb > 0 && na > 0)
        for (int i = 0; i < 4; ++i) generative.push_back(i % 2 == 0 ? coupling(bonds, angles) : coupling(angles, bonds));
    if (nt > 0 && na > 0) generative.push_back(coupling(torsions, angles));
    if (na + nt > 0 && nb > 0) generative.push_back(coupling(concat(angles, torsions), bonds));

    nlohmann::json layers = nlohmann::json::array();
    for (auto it = generative.rbegin(); it != generative.rend(); ++it) layers.push_back(*it);
    return {{"dim", nb + na + nt}, {"circular", ic->circularFlags()}, {"embedding", embedding}, {"layers", layers}};
}

}  // namespace flowforce
