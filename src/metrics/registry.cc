#include "metrics/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace nex::metrics {

namespace {

std::string escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

// name{a="1",b="2"} with `extra` (le="...") last.
std::string series_name(const std::string& name, const Labels& labels,
                        const std::string& extra = {}) {
  std::string out = name;
  if (labels.empty() && extra.empty()) return out;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + escape(v) + "\"";
    first = false;
  }
  if (!extra.empty()) out += (first ? "" : ",") + extra;
  return out + '}';
}

}  // namespace

void Scrape::gauge(const std::string& name, Labels labels, double value) {
  gauges_[name].emplace_back(std::move(labels), value);
}

Series::Series(const std::vector<double>* bounds) : bounds_(bounds) {
  if (!bounds_) return;
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1);
}

void Series::observe(double value) {
  if (!counts_) return;  // not a histogram's
  const size_t bucket =
      std::lower_bound(bounds_->begin(), bounds_->end(), value) - bounds_->begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  value_.fetch_add(value, std::memory_order_relaxed);
}

void Registry::counter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  families_.push_back({.name = name, .help = help, .type = Type::kCounter});
}

void Registry::gauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  families_.push_back({.name = name, .help = help, .type = Type::kGauge});
}

void Registry::histogram(const std::string& name, const std::string& help,
                         std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  std::lock_guard lock(mu_);
  families_.push_back(
      {.name = name, .help = help, .type = Type::kHistogram, .bounds = std::move(bounds)});
}

Series* Registry::series(const std::string& name, const Labels& labels) {
  return find_series(name, labels, std::nullopt);
}

Series* Registry::find_series(const std::string& name, const Labels& labels,
                              std::optional<Type> type) {
  std::lock_guard lock(mu_);
  for (auto& f : families_) {
    if (f.name != name) continue;
    if (f.type == Type::kGauge || (type && f.type != *type)) return nullptr;
    auto it = f.series.try_emplace(labels, f.type == Type::kHistogram ? &f.bounds : nullptr).first;
    return &it->second;
  }
  return nullptr;
}

void Registry::add(const std::string& name, const Labels& labels, double value) {
  if (Series* s = find_series(name, labels, Type::kCounter)) s->add(value);
}

void Registry::observe(const std::string& name, const Labels& labels, double value) {
  if (Series* s = find_series(name, labels, Type::kHistogram)) s->observe(value);
}

void Registry::collect(std::function<void(Scrape&)> collector) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::render() const {
  // Collectors read other parts' state: run them without holding our lock.
  std::vector<std::function<void(Scrape&)>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  Scrape scrape;
  for (const auto& c : collectors) c(scrape);

  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& f : families_) {
    static constexpr const char* kTypes[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + f.name + " " + f.help + "\n";
    out += "# TYPE " + f.name + " " + kTypes[static_cast<int>(f.type)] + "\n";
    if (f.type == Type::kGauge) {
      if (auto it = scrape.gauges_.find(f.name); it != scrape.gauges_.end()) {
        for (const auto& [labels, v] : it->second)
          out += series_name(f.name, labels) + " " + number(v) + "\n";
      }
      continue;
    }
    for (const auto& [labels, s] : f.series) {
      if (f.type == Type::kCounter) {
        out += series_name(f.name, labels) + " " + number(s.value_.load()) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= f.bounds.size(); ++i) {
        cumulative += s.counts_[i].load();
        const std::string le = i < f.bounds.size() ? number(f.bounds[i]) : "+Inf";
        out += series_name(f.name + "_bucket", labels, "le=\"" + le + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      out += series_name(f.name + "_sum", labels) + " " + number(s.value_.load()) + "\n";
      out += series_name(f.name + "_count", labels) + " " + std::to_string(s.count_.load()) + "\n";
    }
  }
  return out;
}

}  // namespace nex::metrics
