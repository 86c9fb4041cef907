#pragma once
// A small team of threads for the native evaluator: the caller and n-1 workers share out the items of one
// task (a coupling layer's conditioner heads, ~10-50 us each) by claiming them one at a time, so a worker
// that the system has not scheduled yet simply claims nothing and the caller does the work itself; the
// team never waits for a thread that has not started. Workers spin between tasks for a while (no system
// call on the hot path) and then sleep on a condition variable, so an idle team costs no CPU.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

// Polling is a plain load, without the PAUSE instruction: in virtual machines a vCPU that executes PAUSE
// in a loop is taken off its core by pause-loop exiting, which here delayed hand-overs by milliseconds.
#define FLOWFORCE_CPU_RELAX() asm volatile("" ::: "memory")

namespace flowforce::native {

class ThreadTeam {
public:
    /** threads: team size including the caller (>= 1); spin: how long an idle worker polls for the next
     *  task before it sleeps. */
    explicit ThreadTeam(int threads, std::chrono::microseconds spin = std::chrono::microseconds(2000))
        : size_(threads < 1 ? 1 : threads), spin_(spin) {
        for (int t = 1; t < size_; ++t) workers_.emplace_back([this, t] { work(t); });
    }
    ~ThreadTeam() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_.store(true);
            next_.store((generation_ + 1) << 32);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }
    ThreadTeam(const ThreadTeam&) = delete;
    ThreadTeam& operator=(const ThreadTeam&) = delete;

    int size() const { return size_; }

    /** Calls task(item, thread) once for each item < count, spread over the team (thread 0 is the caller;
     *  every thread has its own index < size() for its scratch memory), and returns when all have returned.
     *  Items are claimed in order. The task must not throw. */
    template <class F>
    void run(int count, F& task) {
        if (size_ == 1 || count < 2) {
            for (int i = 0; i < count; ++i) task(i, 0);
            return;
        }
        call_ = [](void* f, int item, int thread) { (*static_cast<F*>(f))(item, thread); };
        context_ = &task;
        count_.store(count, std::memory_order_relaxed);
        completed_.store(0, std::memory_order_relaxed);
        const uint64_t g = ++generation_;
        next_.store(g << 32);  // seq_cst: ordered before the read of sleepers_ below
        if (sleepers_.load() > 0) {
            std::lock_guard<std::mutex> lock(mutex_);
            wake_.notify_all();
        }
        int done = 0;
        for (int item; (item = claim(g)) >= 0; ++done) task(item, 0);
        if (done < count)
            for (unsigned i = 1; completed_.load(std::memory_order_acquire) != count - done; ++i) relax(i);
    }

private:
    /** The next unclaimed item of generation g, or -1 when all are claimed or g is over. */
    int claim(uint64_t g) {
        uint64_t v = next_.load(std::memory_order_acquire);
        for (;;) {
            if ((v >> 32) != g || static_cast<int>(v & 0xffffffffu) >= count_.load(std::memory_order_relaxed)) return -1;
            if (next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) return static_cast<int>(v & 0xffffffffu);
        }
    }

    /** A waiting thread's i-th poll: pause the core, and after ~1000 polls (a few microseconds) give the
     *  core away at every poll, so that a team larger than the free cores still moves on. */
    static void relax(unsigned i) {
        if (i < 1024) FLOWFORCE_CPU_RELAX();
        else std::this_thread::yield();
    }

    void work(int t) {
        uint64_t seen = 0;
        for (;;) {
            uint64_t g = next_.load(std::memory_order_acquire) >> 32;
            if (g == seen) {
                const auto start = std::chrono::steady_clock::now();
                for (unsigned i = 1; (g = next_.load(std::memory_order_acquire) >> 32) == seen; ++i) {
                    relax(i);
                    if ((i & 255) == 0 && std::chrono::steady_clock::now() - start > spin_) {
                        std::unique_lock<std::mutex> lock(mutex_);
                        sleepers_.fetch_add(1);  // seq_cst: before the predicate reads next_
                        wake_.wait(lock, [&] { return (next_.load() >> 32) != seen; });
                        sleepers_.fetch_sub(1);
                    }
                }
            }
            seen = g;
            if (stop_.load()) return;
            // a claim succeeds only while generation g runs, and the caller does not return before every
            // claimed item has completed: call_, context_ and count_ are g's for every claimed item
            for (int item; (item = claim(g)) >= 0;) {
                call_(context_, item, t);
                completed_.fetch_add(1, std::memory_order_release);
            }
        }
    }

    const int size_;
    const std::chrono::microseconds spin_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    uint64_t generation_ = 0;              // the caller's count of tasks
    std::atomic<uint64_t> next_{0};        // generation << 32 | next unclaimed item
    std::atomic<int> completed_{0}, sleepers_{0};
    std::atomic<bool> stop_{false};
    void (*call_)(void*, int, int) = nullptr;
    void* context_ = nullptr;
    std::atomic<int> count_{0};
};

}  // namespace flowforce::native
