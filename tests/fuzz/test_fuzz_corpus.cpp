// The fuzz targets' seeds and regression inputs (tests/fuzz/corpus/<target>/) through the normal build's
// loaders (g++, libFlowForce with LibTorch, no sanitizers): each file must load or be refused with a
// one-line exception, by the same checks the fuzz targets apply (FuzzModel.h, FuzzH5MD.h, FuzzXml.h;
// a finding aborts, which fails the test). Keeps the corpus checked in every `make test`, without clang.
#include "FuzzH5MD.h"
#include "FuzzModel.h"
#include "FuzzXml.h"

#include "flowforce/flow/FileIO.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace {

std::vector<std::filesystem::path> corpus(const std::string& target) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(FLOWFORCE_FUZZ_CORPUS_DIR) / target))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

TEST(FuzzCorpus, ModelFiles) {
    const auto files = corpus("fuzz_model");
    ASSERT_GE(files.size(), 5u);
    int loaded = 0;
    for (const auto& f : files) {
        SCOPED_TRACE(f.string());
        const std::string bytes = flowforce::readFile(f.string());
        flowforce::fuzz::checkModelBytes(bytes);
        try {
            (void)flowforce::NativeFlow::compile(flowforce::parseModelFile(bytes, f.string()), f.string());
            ++loaded;
        } catch (const flowforce::ModelFileError&) {
        }
    }
    EXPECT_GE(loaded, 5);  // the generated seeds are valid models
}

TEST(FuzzCorpus, H5MDLayouts) {
    const auto files = corpus("fuzz_h5md");
    ASSERT_GE(files.size(), 2u);
    const std::string path = flowforce::fuzz::h5mdScratchPath();
    for (const auto& f : files) {
        SCOPED_TRACE(f.string());
        const std::string bytes = flowforce::readFile(f.string());
        flowforce::fuzz::checkH5MDLayout(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
    }
    // The empty layout is the usual one: a valid two-frame file.
    flowforce::fuzz::h5md_detail::Bytes none(nullptr, 0);
    ASSERT_TRUE(flowforce::fuzz::h5md_detail::writeFile(none, path));
    const auto ds = flowforce::md::readH5MD(path);
    EXPECT_EQ(ds.frames, 2u);
    EXPECT_EQ(ds.atoms, 3u);
    std::filesystem::remove(path);
}

TEST(FuzzCorpus, FlowForceXml) {
    const auto files = corpus("fuzz_xml");
    ASSERT_GE(files.size(), 2u);
    flowforce::fuzz::installRecordingProxy();
    int deserialized = 0;  // inputs that are not plain XML with a FlowForce root are skipped (FuzzXml.h)
    for (const auto& f : files) {
        SCOPED_TRACE(f.string());
        deserialized += flowforce::fuzz::checkXmlBytes(flowforce::readFile(f.string()));
    }
    EXPECT_GE(deserialized, 2);
}
