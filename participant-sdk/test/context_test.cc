#include "txc/participant/context.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

namespace txc {
namespace participant {
namespace {

wire::TxnContext Sample() {
  wire::TxnContext c;
  c.gtid = "g-123:weird'id";
  c.coordinators = {"127.0.0.1:7000", "10.0.0.2:7000"};
  c.deadline_unix_ms = 1700000000123;
  c.__set_branch_id("b1");
  return c;
}

TEST(ContextTest, RoundTrip) {
  const std::string encoded = EncodeTxnContext(Sample());
  for (char ch : encoded) {
    EXPECT_TRUE(isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_') << encoded;
  }
  auto decoded = DecodeTxnContext(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, Sample());
  EXPECT_TRUE(decoded->__isset.branch_id);
}

TEST(ContextTest, RoundTripWithoutOptionalFieldAndAllLengths) {
  // Every base64 tail length (0, 1, 2 leftover bytes) round-trips.
  for (int n = 1; n <= 6; ++n) {
    wire::TxnContext c;
    c.gtid = std::string(n, 'a' + n);
    c.deadline_unix_ms = n;
    auto decoded = DecodeTxnContext(EncodeTxnContext(c));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->gtid, c.gtid);
    EXPECT_FALSE(decoded->__isset.branch_id);
  }
}

TEST(ContextTest, RejectsGarbage) {
  EXPECT_EQ(DecodeTxnContext("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeTxnContext("not base64!").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeTxnContext("QUJD").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeTxnContext(std::string(kMaxEncodedTxnContext + 4, 'A')).status().code(),
            StatusCode::kInvalidArgument);
  std::string truncated = EncodeTxnContext(Sample());
  truncated.resize(truncated.size() / 2);
  EXPECT_FALSE(DecodeTxnContext(truncated).ok());
  wire::TxnContext no_gtid;
  EXPECT_EQ(DecodeTxnContext(EncodeTxnContext(no_gtid)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ContextTest, RandomAndMutatedInputNeverCrashes) {
  // Mutations of a valid encoding and random strings: each is either decoded
  // (with a gtid) or rejected as kInvalidArgument; UBSan/ASan builds check the rest.
  std::mt19937 rng(7);
  const std::string valid = EncodeTxnContext(Sample());
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int decoded = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = valid;
    if (i % 2 == 0) {
      text[rng() % text.size()] = alphabet[rng() % alphabet.size()];
    } else {
      text.resize(1 + rng() % 80);
      for (char& c : text) c = alphabet[rng() % alphabet.size()];
    }
    auto r = DecodeTxnContext(text);
    if (r.ok()) {
      ++decoded;
      EXPECT_FALSE(r->gtid.empty());
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
  EXPECT_GT(decoded, 0);  // many single-character mutations only change the payload bytes
}

TEST(ContextTest, ScopesNestPerThread) {
  EXPECT_EQ(CurrentTxnContext(), nullptr);
  {
    ScopedTxnContext outer(Sample());
    ASSERT_NE(CurrentTxnContext(), nullptr);
    EXPECT_EQ(CurrentTxnContext()->gtid, Sample().gtid);
    {
      wire::TxnContext inner_ctx;
      inner_ctx.gtid = "inner";
      ScopedTxnContext inner(inner_ctx);
      EXPECT_EQ(CurrentTxnContext()->gtid, "inner");
      std::thread other([] { EXPECT_EQ(CurrentTxnContext(), nullptr); });
      other.join();
    }
    EXPECT_EQ(CurrentTxnContext()->gtid, Sample().gtid);
  }
  EXPECT_EQ(CurrentTxnContext(), nullptr);
}

}  // namespace
}  // namespace participant
}  // namespace txc
