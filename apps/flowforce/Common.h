#pragma once
// Shared pieces of the flowforce subcommands: errors, progress output, JSON reports, plotting.

#include <nlohmann/json.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace flowforce::cli {

/** Bad input or a failed step: main() prints "flowforce <cmd>: error: <message>" and exits 1. */
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/** The message of an exception as one line for the user: a LibTorch error (c10::Error) without its
 *  backtrace, any message up to its first line break. */
std::string errorMessage(const std::exception& e);

/** One line of progress on stderr, redrawn in place on a terminal and printed every 10% otherwise. */
class Progress {
public:
    Progress(std::string label, long total);
    /** Reports `done` of `total` steps with a status text (e.g. the running loss). */
    void update(long done, const std::string& status = "");
    /** Ends the line and prints the elapsed time. */
    void finish(const std::string& status = "");

private:
    std::string label_;
    long total_;
    int lastDecile_ = -1;
    bool tty_;
    std::chrono::steady_clock::time_point start_;
};

/** Writes a JSON document atomically (pretty-printed). */
void writeJson(const std::string& path, const nlohmann::json& doc);

/** Runs the plotting helper (python, matplotlib) with a JSON payload; returns false (with a warning
 *  on stderr) if Python or matplotlib is unavailable, so plots never make a run fail. */
bool makePlots(const std::string& kind, const nlohmann::json& payload, const std::string& outDir);

/** Sets LibTorch's intra-op threads (0: all cores). */
void setThreads(int threads);

/** Creates a folder and its parents; throws Error if that fails. */
void makeDirectories(const std::string& path);

// Subcommand registration (each in its own file).
void registerToy(CLI::App& app);
void registerBench(CLI::App& app);
void registerTrain(CLI::App& app);
void registerInit(CLI::App& app);
void registerEval(CLI::App& app);
void registerData(CLI::App& app);
void registerMD(CLI::App& app);

}  // namespace flowforce::cli
