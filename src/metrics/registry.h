// Prometheus metrics (text exposition format 0.0.4): counters and histograms the code adds to as
// things happen, and gauges read from the live state at each scrape. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <mutex>
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

class Registry {
 public:
  // Each family is declared once, before it is used; a sample for an undeclared one is dropped.
  void counter(const std::string& name, const std::string& help);
  void gauge(const std::string& name, const std::string& help);
  // `bounds`: the buckets' upper bounds, ascending (+Inf is added).
  void histogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  void add(const std::string& name, const Labels& labels = {}, double value = 1);
  void observe(const std::string& name, const Labels& labels, double value);
  // Called at every scrape to report gauges.
  void collect(std::function<void(Scrape&)> collector);

  // Every family, in the order declared.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;              // counter: the total; histogram: the sum
    std::vector<uint64_t> counts;  // histogram: per bucket (not cumulative)
    uint64_t count = 0;            // histogram: observations
  };
  struct Family {
    std::string name;
    std::string help;
    Type type = Type::kCounter;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  Family* find(const std::string& name);

  mutable std::mutex mu_;
  std::vector<Family> families_;
  std::vector<std::function<void(Scrape&)>> collectors_;
};

}  // namespace nex::metrics
