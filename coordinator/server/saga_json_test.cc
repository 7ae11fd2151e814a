#include "coordinator/server/saga_json.h"

#include <gtest/gtest.h>

#include <string>

namespace txc {
namespace {

// One step with the required keys and `extra` (",\"key\": value" pairs) added.
std::string OneStep(const std::string& extra) {
  return R"({"steps": [{"step_id": "s1", "endpoint": "127.0.0.1:9", "action": "a")" + extra + "}]}";
}

// The message of the refusal of `text` ("" when it is accepted).
std::string Refusal(const std::string& text) {
  auto parsed = ParseSagaJson(text);
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  return parsed.status().message();
}

TEST(SagaJsonTest, AcceptsEveryDocumentedKey) {
  auto parsed = ParseSagaJson(R"({
    "gtid": "order-1",
    "steps": [
      {"step_id": "s0", "endpoint": "h:1", "action": "reserve", "compensation": "release",
       "payload": "{\"qty\": 2} \u00e9"},
      {"step_id": "s1", "endpoint": "h:2", "action": "pay", "depends_on": ["s0"],
       "concurrent": false, "max_attempts": 7, "initial_backoff_ms": 50,
       "max_backoff_ms": 2000},
      {"step_id": "s2", "endpoint": "h:3", "action": "ship", "depends_on": [],
       "concurrent": true, "max_backoff_ms": 500}
    ]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const wire::SubmitSagaRequest& req = *parsed;
  EXPECT_TRUE(req.__isset.gtid);
  EXPECT_EQ(req.gtid, "order-1");
  ASSERT_EQ(req.steps.size(), 3u);
  EXPECT_EQ(req.steps[0].compensation, "release");
  EXPECT_EQ(req.steps[0].payload, "{\"qty\": 2} \xc3\xa9");
  EXPECT_FALSE(req.steps[0].__isset.retry_policy);
  EXPECT_FALSE(req.steps[0].__isset.concurrent);
  EXPECT_EQ(req.steps[1].depends_on, std::vector<std::string>{"s0"});
  EXPECT_TRUE(req.steps[1].__isset.concurrent);
  EXPECT_FALSE(req.steps[1].concurrent);
  ASSERT_TRUE(req.steps[1].__isset.retry_policy);
  EXPECT_EQ(req.steps[1].retry_policy.max_attempts, 7);
  EXPECT_EQ(req.steps[1].retry_policy.initial_backoff_ms, 50);
  EXPECT_EQ(req.steps[1].retry_policy.max_backoff_ms, 2000);
  // One retry key alone: the others keep the IDL defaults.
  ASSERT_TRUE(req.steps[2].__isset.retry_policy);
  EXPECT_EQ(req.steps[2].retry_policy.max_attempts, 5);
  EXPECT_EQ(req.steps[2].retry_policy.initial_backoff_ms, 100);
  EXPECT_EQ(req.steps[2].retry_policy.max_backoff_ms, 500);
  EXPECT_TRUE(req.steps[2].concurrent);

  auto minimal = ParseSagaJson(OneStep(""));
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_FALSE(minimal->__isset.gtid);
  auto edges =
      ParseSagaJson(OneStep(R"(, "max_attempts": -2147483648, "max_backoff_ms": 2147483647)"));
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_EQ(edges->steps[0].retry_policy.max_attempts, INT32_MIN);
  EXPECT_TRUE(ParseSagaJson(R"({"steps": []})").ok());
}

TEST(SagaJsonTest, RefusesWrongTypesNamingTheKeyAndStep) {
  EXPECT_EQ(Refusal(OneStep(R"(, "max_attempts": "five")")),
            R"(steps[0].max_attempts: must be an integer, got "five" (a string))");
  EXPECT_EQ(Refusal(OneStep(R"(, "max_attempts": "5")")),
            R"(steps[0].max_attempts: must be an integer, got "5" (a string))");
  EXPECT_EQ(Refusal(OneStep(R"(, "concurrent": "yes")")),
            R"(steps[0].concurrent: must be true or false, got "yes" (a string))");
  EXPECT_EQ(Refusal(OneStep(R"(, "payload": {"a": 1})")),
            "steps[0].payload: must be a string, got an object");
  EXPECT_EQ(Refusal(OneStep(R"(, "compensation": null)")),
            "steps[0].compensation: must be a string, got null");
  EXPECT_EQ(Refusal(OneStep(R"(, "depends_on": "s0")")),
            R"(steps[0].depends_on: must be an array of step ids, got "s0" (a string))");
  EXPECT_EQ(Refusal(OneStep(R"(, "depends_on": ["s0", 3])")),
            "steps[0].depends_on[1]: must be a string, got 3 (a number)");
  EXPECT_EQ(Refusal(R"({"gtid": 7, "steps": []})"), "gtid: must be a string, got 7 (a number)");
  EXPECT_EQ(Refusal(R"({"steps": [{"step_id": "a", "endpoint": "h:1", "action": "x"}, 5]})"),
            "steps[1]: must be an object, got 5 (a number)");
}

TEST(SagaJsonTest, RefusesFractionalAndOutOfRangeIntegers) {
  EXPECT_EQ(Refusal(OneStep(R"(, "max_attempts": 2.5)")),
            "steps[0].max_attempts: must be an integer, got 2.5");
  EXPECT_EQ(Refusal(OneStep(R"(, "initial_backoff_ms": 1e3)")),
            "steps[0].initial_backoff_ms: must be an integer, got 1e3");
  EXPECT_EQ(Refusal(OneStep(R"(, "max_attempts": 99999999999)")),
            "steps[0].max_attempts: must be between -2147483648 and 2147483647, got 99999999999");
  EXPECT_EQ(Refusal(OneStep(R"(, "max_backoff_ms": 2147483648)")),
            "steps[0].max_backoff_ms: must be between -2147483648 and 2147483647, got 2147483648");
  EXPECT_NE(Refusal(OneStep(R"(, "max_attempts": -2147483649)")), "");
  EXPECT_NE(Refusal(OneStep(R"(, "max_attempts": 123456789012345678901234567890)")), "");
}

TEST(SagaJsonTest, RefusesUnknownKeys) {
  EXPECT_EQ(Refusal(R"({"steps": [], "bogus": 1})"),
            R"(top level: unknown key "bogus" (known: gtid, steps))");
  const std::string typo = Refusal(
      R"({"steps": [{"step_id": "a", "endpoint": "h:1", "action": "x"},
                    {"step_id": "b", "endpoint": "h:1", "action": "y", "depend_on": ["a"]}]})");
  EXPECT_EQ(typo.rfind(R"(steps[1]: unknown key "depend_on" (known: step_id, )", 0), 0u) << typo;
}

TEST(SagaJsonTest, RefusesStepsThatAreNotAnArray) {
  EXPECT_EQ(Refusal(R"({"steps": "x"})"),
            R"(steps: must be an array of step objects, got "x" (a string))");
  EXPECT_EQ(Refusal(R"({"steps": {"0": {}}})"),
            "steps: must be an array of step objects, got an object");
  EXPECT_EQ(Refusal(R"({"gtid": "g"})"), R"("steps" is missing)");
  EXPECT_EQ(Refusal(R"({"steps": [{"endpoint": "h:1", "action": "x"}]})"),
            R"(steps[0]: "step_id" is missing)");
}

TEST(SagaJsonTest, RefusesMalformedJsonWithThePlace) {
  EXPECT_EQ(Refusal("[]"), "the file must hold a JSON object, got an array");
  EXPECT_EQ(Refusal(""), "line 1, column 1: unexpected end of the file");
  EXPECT_EQ(Refusal("{\"steps\": [],\n  }"), "line 2, column 3: expected a key in quotes");
  EXPECT_EQ(Refusal(R"({"steps": []} x)"),
            "line 1, column 15: unexpected text after the JSON document");
  EXPECT_EQ(Refusal(R"({"steps": [], "steps": []})"),
            R"(line 1, column 15: key "steps" appears twice)");
  EXPECT_NE(Refusal(OneStep(R"(, "max_attempts": 05)")), "");
  EXPECT_NE(Refusal(OneStep(R"(, "payload": "\x")")), "");
  EXPECT_NE(Refusal(OneStep(R"(, "payload": "\ud800")")), "");
  EXPECT_NE(Refusal(std::string(100, '[')), "");
}

}  // namespace
}  // namespace txc
