#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace txc {
namespace {

TEST(MetricsTest, CounterGaugeHistogramRender) {
  MetricsRegistry r;
  CounterFamily* calls = r.AddCounter("t_calls_total", "Calls.", {"method", "result"});
  calls->With({"prepare", "ok"})->Inc();
  calls->With({"prepare", "ok"})->Inc(2);
  calls->With({"commit", "error"})->Inc();
  r.AddGauge("t_epoch", "Epoch.")->With({})->Set(7);
  HistogramFamily* h = r.AddHistogram("t_latency_seconds", "Latency.", {}, {0.01, 0.1});
  h->With({})->Observe(0.005);
  h->With({})->Observe(0.05);
  h->With({})->Observe(3);
  const std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP t_calls_total Calls.\n"
            "# TYPE t_calls_total counter\n"
            "t_calls_total{method=\"commit\",result=\"error\"} 1\n"
            "t_calls_total{method=\"prepare\",result=\"ok\"} 3\n"
            "# HELP t_epoch Epoch.\n"
            "# TYPE t_epoch gauge\n"
            "t_epoch 7\n"
            "# HELP t_latency_seconds Latency.\n"
            "# TYPE t_latency_seconds histogram\n"
            "t_latency_seconds_bucket{le=\"0.01\"} 1\n"
            "t_latency_seconds_bucket{le=\"0.1\"} 2\n"
            "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"
            "t_latency_seconds_sum 3.055\n"
            "t_latency_seconds_count 3\n");
}

TEST(MetricsTest, HistogramLabelsAndBoundaryGoesIntoItsBucket) {
  MetricsRegistry r;
  HistogramFamily* h = r.AddHistogram("t_h", "H.", {"m"}, {1, 2});
  h->With({"x"})->Observe(1);  // le is inclusive
  const std::string text = r.Render();
  EXPECT_NE(text.find("t_h_bucket{m=\"x\",le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_h_bucket{m=\"x\",le=\"2\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_h_sum{m=\"x\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  r.AddCounter("t_total", "Line one\\two\nthree", {"endpoint"})->With({"a\"b\\c\nd"})->Inc();
  const std::string text = r.Render();
  EXPECT_NE(text.find("# HELP t_total Line one\\\\two\\nthree\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_total{endpoint=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, FamilyWithoutChildrenRendersOnlyHelpAndType) {
  MetricsRegistry r;
  r.AddCounter("t_total", "Nothing yet.", {"kind"});
  EXPECT_EQ(r.Render(), "# HELP t_total Nothing yet.\n# TYPE t_total counter\n");
}

TEST(MetricsTest, AddingTheSameNameTwiceReturnsTheSameFamily) {
  MetricsRegistry r;
  CounterFamily* a = r.AddCounter("t_total", "A.");
  CounterFamily* b = r.AddCounter("t_total", "A.");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a->With({}), b->With({}));
}

TEST(MetricsTest, CardinalityIsBoundedByAnOverflowChild) {
  MetricsRegistry r;
  CounterFamily* c = r.AddCounter("t_total", "C.", {"endpoint"}, /*max_children=*/2);
  c->With({"a"})->Inc();
  c->With({"b"})->Inc();
  c->With({"c"})->Inc();
  c->With({"d"})->Inc();
  const std::string text = r.Render();
  EXPECT_NE(text.find("t_total{endpoint=\"_other\"} 2\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("endpoint=\"c\""), std::string::npos) << text;
}

TEST(MetricsTest, FormatsSpecialValues) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-3), "-3");
  EXPECT_EQ(FormatMetricValue(0.5), "0.5");
  EXPECT_EQ(FormatMetricValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatMetricValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatMetricValue(0.0 / 0.0), "NaN");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry r;
  CounterFamily* c = r.AddCounter("t_total", "C.", {"t"});
  HistogramFamily* h = r.AddHistogram("t_seconds", "H.", {}, {0.5});
  Gauge* g = r.AddGauge("t_g", "G.")->With({});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        c->With({std::to_string(i % 3)})->Inc();
        h->With({})->Observe(t % 2 == 0 ? 0.25 : 1.0);
        g->Add(1);
      }
      (void)t;
    });
  }
  for (auto& t : threads) t.join();
  int64_t total = 0;
  for (int i = 0; i < 3; ++i) total += c->With({std::to_string(i)})->Value();
  EXPECT_EQ(total, kThreads * kPerThread);
  Histogram::Snapshot s = h->With({})->Snap();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.cumulative[0], static_cast<uint64_t>(kThreads / 2 * kPerThread));
  EXPECT_DOUBLE_EQ(s.sum, kThreads / 2 * kPerThread * 1.25);
  EXPECT_DOUBLE_EQ(g->Value(), kThreads * kPerThread);
}

}  // namespace
}  // namespace txc
