#include "common/metrics.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace txc {

const char kPrometheusTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

namespace {

void AtomicAdd(std::atomic<double>& a, double d) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + d, std::memory_order_relaxed)) {
  }
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// HELP text escaping: backslash and newline.
std::string EscapeHelp(const std::string& h) {
  std::string out;
  for (char c : h) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string MetricFamilyBase::Labels(const std::vector<std::string>& values,
                                     const std::string& extra_name,
                                     const std::string& extra_value) const {
  const std::vector<std::string>& names = label_names_;
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ",";
    out += extra_name + "=\"" + EscapeLabelValue(extra_value) + "\"";
  }
  return out + "}";
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
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

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  // The shortest of 15..17 significant digits that reads back as v.
  char buf[32];
  for (int digits = 15; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Gauge::Add(double d) { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 1; i < bounds_.size(); ++i) CHECK_LT(bounds_[i - 1], bounds_[i]);
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;  // few buckets: a scan beats a search
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

std::vector<double> LatencyBucketsSeconds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   25};
}

MetricFamilyBase::MetricFamilyBase(std::string name, std::string help,
                                   std::vector<std::string> label_names, MetricType type,
                                   size_t max_children)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      type_(type),
      max_children_(std::max<size_t>(1, max_children)) {}

void* MetricFamilyBase::GetOrCreate(const std::vector<std::string>& values) {
  CHECK_EQ(values.size(), label_names_.size()) << name_ << ": wrong number of label values";
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = children_.find(values);
    if (it != children_.end()) return it->second.get();
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = children_.find(values);
  if (it != children_.end()) return it->second.get();
  if (children_.size() >= max_children_) {
    // Past the cardinality bound: one shared overflow child.
    std::vector<std::string> other(values.size(), "_other");
    auto& slot = children_[other];
    if (slot == nullptr) {
      LOG(WARNING) << "metric " << name_ << ": more than " << max_children_
                   << " label sets; further ones are counted under \"_other\"";
      slot = NewChild();
    }
    return slot.get();
  }
  auto& slot = children_[values];
  slot = NewChild();
  return slot.get();
}

void MetricFamilyBase::Render(std::string* out) const {
  *out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n";
  *out += "# TYPE " + name_ + " " + TypeName(type_) + "\n";
  std::shared_lock<std::shared_mutex> lock(mu_);
  for (const auto& [values, child] : children_) {
    RenderChild(values, child.get(), out);
  }
}

template <>
std::shared_ptr<void> MetricFamily<Counter>::NewChild() {
  return std::make_shared<Counter>();
}
template <>
std::shared_ptr<void> MetricFamily<Gauge>::NewChild() {
  return std::make_shared<Gauge>();
}
template <>
std::shared_ptr<void> MetricFamily<Histogram>::NewChild() {
  return std::make_shared<Histogram>(bounds_);
}

template <>
void MetricFamily<Counter>::RenderChild(const std::vector<std::string>& values, const void* child,
                                        std::string* out) const {
  *out += name_ + Labels(values) + " " +
          std::to_string(static_cast<const Counter*>(child)->Value()) + "\n";
}

template <>
void MetricFamily<Gauge>::RenderChild(const std::vector<std::string>& values, const void* child,
                                      std::string* out) const {
  *out += name_ + Labels(values) + " " +
          FormatMetricValue(static_cast<const Gauge*>(child)->Value()) + "\n";
}

template <>
void MetricFamily<Histogram>::RenderChild(const std::vector<std::string>& values, const void* child,
                                          std::string* out) const {
  const Histogram::Snapshot s = static_cast<const Histogram*>(child)->Snap();
  for (size_t i = 0; i < s.bounds.size(); ++i) {
    *out += name_ + "_bucket" + Labels(values, "le", FormatMetricValue(s.bounds[i])) + " " +
            std::to_string(s.cumulative[i]) + "\n";
  }
  *out += name_ + "_bucket" + Labels(values, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
  *out += name_ + "_sum" + Labels(values) + " " + FormatMetricValue(s.sum) + "\n";
  *out += name_ + "_count" + Labels(values) + " " + std::to_string(s.count) + "\n";
}

template <typename T>
MetricFamily<T>* MetricsRegistry::Add(const std::string& name, const std::string& help,
                                      std::vector<std::string> labels, MetricType type,
                                      size_t max_children, std::vector<double> bounds) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& slot = families_[name];
  if (slot == nullptr) {
    slot = std::make_unique<MetricFamily<T>>(name, help, std::move(labels), type, max_children,
                                             std::move(bounds));
  }
  auto* family = dynamic_cast<MetricFamily<T>*>(slot.get());
  CHECK(family != nullptr) << "metric " << name << " registered twice with different types";
  return family;
}

CounterFamily* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> labels, size_t max_children) {
  return Add<Counter>(name, help, std::move(labels), MetricType::kCounter, max_children);
}

GaugeFamily* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> labels, size_t max_children) {
  return Add<Gauge>(name, help, std::move(labels), MetricType::kGauge, max_children);
}

HistogramFamily* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                               std::vector<std::string> labels,
                                               std::vector<double> bounds, size_t max_children) {
  return Add<Histogram>(name, help, std::move(labels), MetricType::kHistogram, max_children,
                        std::move(bounds));
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::shared_lock<std::shared_mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    family->Render(&out);
    (void)name;
  }
  return out;
}

}  // namespace txc
