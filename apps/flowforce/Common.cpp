#include "Common.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/md/Share.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <dlfcn.h>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>
#include <unistd.h>

#ifndef FLOWFORCE_PYTHON
#define FLOWFORCE_PYTHON "python3"
#endif

namespace flowforce::cli {

std::string errorMessage(const std::exception& e) {
    const auto* torchError = dynamic_cast<const c10::Error*>(&e);
    const std::string message = torchError ? torchError->what_without_backtrace() : e.what();
    return message.substr(0, message.find('\n'));
}

Progress::Progress(std::string label, long total)
    : label_(std::move(label)), total_(total > 0 ? total : 1), tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()) {}

namespace {
std::string formatSeconds(double s) {
    char buf[32];
    if (s < 120) std::snprintf(buf, sizeof buf, "%.0f s", s);
    else std::snprintf(buf, sizeof buf, "%.1f min", s / 60.0);
    return buf;
}
}  // namespace

void Progress::update(long done, const std::string& status) {
    const double frac = static_cast<double>(done) / static_cast<double>(total_);
    const int decile = static_cast<int>(frac * 10.0);
    if (!tty_ && decile == lastDecile_) return;
    lastDecile_ = decile;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
    const int width = 24, filled = static_cast<int>(frac * width);
    std::ostringstream line;
    line << label_ << " [" << std::string(static_cast<size_t>(filled), '=') << std::string(static_cast<size_t>(width - filled), ' ')
         << "] " << done << "/" << total_ << "  " << status;
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %.1f it/s, ETA %s", rate, formatSeconds(eta).c_str());
    line << buf;
    if (tty_) std::cerr << "\r" << line.str() << "\033[K" << std::flush;
    else std::cerr << line.str() << "\n" << std::flush;
}

void Progress::finish(const std::string& status) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_) std::cerr << "\r\033[K";
    std::cerr << label_ << " done in " << formatSeconds(elapsed) << (status.empty() ? "" : "  " + status) << "\n";
}

void writeJson(const std::string& path, const nlohmann::json& doc) {
    try {
        writeFileAtomically(path, doc.dump(2) + "\n");
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
}

void makeDirectories(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw Error("cannot create folder '" + path + "': " + ec.message());
}

bool makePlots(const std::string& kind, const nlohmann::json& payload, const std::string& outDir) {
    const char* envScript = std::getenv("FLOWFORCE_PLOT_SCRIPT");
    std::string script = envScript ? envScript : "";
    if (script.empty()) {
        // <exe>/../share/flowforce/flowforce_plots.py (installed, or the build tree's copy)
        try {
            script = flowforce::md::findShareFile("flowforce_plots.py");
        } catch (const std::exception&) {
        }
    }
    if (script.empty() || !std::filesystem::exists(script)) {
        std::cerr << "warning: plotting script not found; no plots written\n";
        return false;
    }
    makeDirectories(outDir);
    const std::string payloadPath = outDir + "/." + kind + "-plotdata.json";
    writeFileAtomically(payloadPath, payload.dump());
    const char* envPython = std::getenv("FLOWFORCE_PYTHON");
    const std::string python = envPython ? envPython : FLOWFORCE_PYTHON;
    const std::string cmd = "'" + python + "' '" + script + "' " + kind + " '" + payloadPath + "' '" + outDir + "'";
    const int rc = std::system(cmd.c_str());
    std::remove(payloadPath.c_str());
    if (rc != 0) {
        std::cerr << "warning: plotting failed (" << python << " with matplotlib needed); no plots written\n";
        return false;
    }
    return true;
}

void setThreads(int threads) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads);
    // LibTorch parallelises over its own threads; an OpenBLAS underneath would start as many threads again for
    // every small matrix product and the two pools fight over the cores (measured: a training epoch 2x slower on
    // two cores). Keep BLAS single-threaded when it is OpenBLAS; other BLAS libraries follow at::set_num_threads.
    using SetBlasThreads = void (*)(int);
    if (auto* f = reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(1);
}

}  // namespace flowforce::cli
