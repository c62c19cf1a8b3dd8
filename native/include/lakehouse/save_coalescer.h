// SaveCoalescer: at most one save in flight, and any burst of triggers collapses into one.
//
// trigger() records a request and wakes the worker. The worker runs save_fn whenever the
// newest request is newer than the last save it started, so while one save runs any number
// of triggers produce exactly one more save (50 triggers during a save -> 2 saves in all).
// flush() waits until a save that started after every trigger made so far has finished, and
// reports whether it succeeded. A failing save is counted and remembered; later triggers
// still run. close() flushes and stops the worker; the destructor calls it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace lakehouse {

class SaveCoalescer {
 public:
  // save_fn throws (any exception) to report a failure.
  using SaveFn = std::function<void()>;

  struct Stats {
    std::uint64_t triggers = 0;
    std::uint64_t saves = 0;     // save_fn calls that returned normally
    std::uint64_t failures = 0;  // save_fn calls that threw
    bool running = false;
    bool pending = false;
    std::string last_error;
  };

  struct FlushResult {
    bool ok = true;  // false if the save covering the flush failed
    bool timed_out = false;
    std::string error;
  };

  explicit SaveCoalescer(SaveFn save_fn);
  ~SaveCoalescer();
  SaveCoalescer(const SaveCoalescer&) = delete;
  SaveCoalescer& operator=(const SaveCoalescer&) = delete;

  void trigger();
  // timeout_s < 0 waits without limit.
  FlushResult flush(double timeout_s = -1);
  // Flushes what is pending, then stops the worker. Further triggers are ignored.
  void close();
  Stats stats() const;

 private:
  void run();

  SaveFn save_fn_;
  mutable std::mutex mu_;
  std::condition_variable wake_;   // worker waits for requests
  std::condition_variable done_;   // flushers wait for completions
  std::uint64_t requested_ = 0;    // generation of the newest trigger
  std::uint64_t started_ = 0;      // generation covered by the save in flight / last started
  std::uint64_t completed_ = 0;    // generation covered by the last finished save
  bool last_ok_ = true;
  bool running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  Stats stats_;
  std::thread worker_;
};

}  // namespace lakehouse
