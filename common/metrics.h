// A small Prometheus metrics registry: counters, gauges and histograms with
// fixed buckets, grouped in labelled families, rendered in the Prometheus text
// exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
//   MetricsRegistry registry;
//   auto* calls = registry.AddCounter("txc_calls_total", "Calls made.", {"method", "result"});
//   Counter* ok = calls->With({"prepare", "ok"});   // look up once, keep the pointer
//   ok->Inc();                                       // one relaxed atomic add
//   std::string text = registry.Render();            // for GET /metrics
//
// Cost: Counter::Inc, Gauge::Set/Add and Histogram::Observe are lock-free
// atomics. Family::With() looks the label values up in a map under a shared
// (reader) lock and creates the child under the writer lock the first time;
// callers with fixed label values look up once and keep the pointer, callers
// with open label values (a participant endpoint) pay one lookup per event.
// Children live as long as the registry; pointers to them never dangle.
//
// Cardinality: a family holds at most max_children label sets (default 1000);
// further label sets share one overflow child whose label values are all
// "_other", so a client sending endless endpoints cannot grow memory forever.
//
// Thread-safety: everything may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

namespace txc {

class Counter {
 public:
  void Inc(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: upper bounds of the buckets, strictly increasing (+Inf implied).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1 (the last: +Inf)
  std::atomic<double> sum_{0};
};

// Bucket bounds: start, start*factor, ... (count of them).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// Latency buckets in seconds, 100 µs .. ~26 s.
std::vector<double> LatencyBucketsSeconds();

enum class MetricType { kCounter, kGauge, kHistogram };

class MetricFamilyBase {
 public:
  MetricFamilyBase(std::string name, std::string help, std::vector<std::string> label_names,
                   MetricType type, size_t max_children);
  virtual ~MetricFamilyBase() = default;
  const std::string& name() const { return name_; }
  // Appends this family's HELP, TYPE and samples to `out`.
  void Render(std::string* out) const;

 protected:
  // A new child, owned by the family from then on.
  virtual std::shared_ptr<void> NewChild() = 0;
  virtual void RenderChild(const std::vector<std::string>& values, const void* child,
                           std::string* out) const = 0;
  // `{a="x",b="y"}` for these values, with an optional extra label (le).
  std::string Labels(const std::vector<std::string>& values, const std::string& extra_name = "",
                     const std::string& extra_value = "") const;
  // The child for `values`, created the first time (the overflow child past max_children).
  void* GetOrCreate(const std::vector<std::string>& values);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const MetricType type_;
  const size_t max_children_;

 private:
  mutable std::shared_mutex mu_;  // guards children_
  // Label values -> child. The child is owned through the deleter stored with it.
  std::map<std::vector<std::string>, std::shared_ptr<void>> children_;
};

template <typename T>
class MetricFamily final : public MetricFamilyBase {
 public:
  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names,
               MetricType type, size_t max_children, std::vector<double> bounds = {})
      : MetricFamilyBase(std::move(name), std::move(help), std::move(label_names), type,
                         max_children),
        bounds_(std::move(bounds)) {}
  // The child for these label values (as many as label names). Never null.
  T* With(const std::vector<std::string>& values) { return static_cast<T*>(GetOrCreate(values)); }

 private:
  std::shared_ptr<void> NewChild() override;
  void RenderChild(const std::vector<std::string>& values, const void* child,
                   std::string* out) const override;
  const std::vector<double> bounds_;  // histograms only
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  static constexpr size_t kDefaultMaxChildren = 1000;

  // Adding a name twice returns the family already there (its help, labels and
  // type must agree; a mismatch is a programming error and CHECK-fails).
  CounterFamily* AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> labels = {},
                            size_t max_children = kDefaultMaxChildren);
  GaugeFamily* AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> labels = {},
                        size_t max_children = kDefaultMaxChildren);
  HistogramFamily* AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> labels, std::vector<double> bounds,
                                size_t max_children = kDefaultMaxChildren);

  // Every family in name order, in the text exposition format 0.0.4.
  std::string Render() const;

 private:
  template <typename T>
  MetricFamily<T>* Add(const std::string& name, const std::string& help,
                       std::vector<std::string> labels, MetricType type, size_t max_children,
                       std::vector<double> bounds = {});

  mutable std::shared_mutex mu_;  // guards families_
  std::map<std::string, std::unique_ptr<MetricFamilyBase>> families_;
};

// The content type of Render()'s output.
extern const char kPrometheusTextContentType[];

// Label value escaping (\\, \", \n) and number formatting of the format.
std::string EscapeLabelValue(const std::string& v);
std::string FormatMetricValue(double v);

}  // namespace txc
