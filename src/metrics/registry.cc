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

Registry::Family* Registry::find(const std::string& name) {
  for (auto& f : families_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void Registry::add(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  if (Family* f = find(name); f && f->type == Type::kCounter) f->series[labels].value += value;
}

void Registry::observe(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Family* f = find(name);
  if (!f || f->type != Type::kHistogram) return;
  Series& s = f->series[labels];
  if (s.counts.empty()) s.counts.assign(f->bounds.size() + 1, 0);
  const size_t bucket =
      std::lower_bound(f->bounds.begin(), f->bounds.end(), value) - f->bounds.begin();
  s.counts[bucket] += 1;
  s.count += 1;
  s.value += value;
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
        out += series_name(f.name, labels) + " " + number(s.value) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= f.bounds.size(); ++i) {
        cumulative += s.counts[i];
        const std::string le = i < f.bounds.size() ? number(f.bounds[i]) : "+Inf";
        out += series_name(f.name + "_bucket", labels, "le=\"" + le + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      out += series_name(f.name + "_sum", labels) + " " + number(s.value) + "\n";
      out += series_name(f.name + "_count", labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace nex::metrics
