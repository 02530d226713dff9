// Prometheus metrics (text exposition format 0.0.4): counters and histograms the code adds to as
// things happen, and gauges read from the live state at each scrape. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nex::metrics {

// Label names and values, in the order they are written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// What a collector reports at a scrape.
class Scrape {
 public:
  void gauge(const std::string& name, Labels labels, double value);

 private:
  friend class Registry;
  std::map<std::string, std::vector<std::pair<Labels, double>>> gauges_;
};

// One labelled series of a counter or a histogram. Adding to one is a few atomic operations,
// with no lookup: hot paths keep the pointer Registry::series gave them.
class Series {
 public:
  // Made by Registry::series (in place, in its map); histograms get their buckets' bounds.
  explicit Series(const std::vector<double>* bounds);
  void add(double value = 1) { value_.fetch_add(value, std::memory_order_relaxed); }
  // Histograms: counts the observation in its bucket and in the sum.
  void observe(double value);

 private:
  friend class Registry;
  std::atomic<double> value_{0};  // counter: the total; histogram: the sum
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // histogram: per bucket (not cumulative)
  std::atomic<uint64_t> count_{0};                   // histogram: observations
};

class Registry {
 public:
  // Each family is declared once, before it is used; a sample for an undeclared one is dropped.
  void counter(const std::string& name, const std::string& help);
  void gauge(const std::string& name, const std::string& help);
  // `bounds`: the buckets' upper bounds, ascending (+Inf is added).
  void histogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  // The series of counter or histogram `name` with `labels`, made on first use; it lives as
  // long as the registry. Null when no such counter or histogram was declared.
  Series* series(const std::string& name, const Labels& labels = {});
  void add(const std::string& name, const Labels& labels = {}, double value = 1);
  void observe(const std::string& name, const Labels& labels, double value);
  // Called at every scrape to report gauges.
  void collect(std::function<void(Scrape&)> collector);

  // Every family, in the order declared.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    std::string name;
    std::string help;
    Type type = Type::kCounter;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };

  // The series, when `name` is a counter or histogram (of `type`, when given).
  Series* find_series(const std::string& name, const Labels& labels, std::optional<Type> type);

  mutable std::mutex mu_;
  std::deque<Family> families_;  // a deque: series stay where they are as families are added
  std::vector<std::function<void(Scrape&)>> collectors_;
};

}  // namespace nex::metrics
