#include "common/ids.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

namespace txc {
namespace {

TEST(IdsTest, RandomHex128IsThirtyTwoHexDigitsAndDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string h = RandomHex128();
    ASSERT_EQ(h.size(), 32u);
    for (char c : h) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
    ASSERT_TRUE(seen.insert(h).second) << h;
  }
}

TEST(IdsTest, IdPrefixKeepsSafeCharactersOnly) {
  EXPECT_EQ(IdPrefix("node-a.1_x"), "node-a.1_x");
  EXPECT_EQ(IdPrefix("node a/b"), "node_a_b");
  EXPECT_EQ(IdPrefix(""), "txc");
  EXPECT_EQ(IdPrefix(std::string(100, 'n')).size(), kMaxIdPrefixBytes);
}

TEST(IdsTest, NewIdIsPrefixDashHex) {
  const std::string id = NewId("node-a");
  EXPECT_EQ(id.rfind("node-a-", 0), 0u);
  EXPECT_EQ(id.size(), 7u + 32u);
  for (size_t i = 7; i < id.size(); ++i) {
    ASSERT_TRUE((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')) << id;
  }
}

TEST(IdsTest, TimeOrderedIdsSortByMillisecondAndDoNotRepeat) {
  std::set<std::string> seen;
  std::string previous;
  for (int i = 0; i < 10000; ++i) {
    const std::string h = TimeOrderedHex128();
    ASSERT_EQ(h.size(), 32u);
    ASSERT_TRUE(seen.insert(h).second) << h;
    // The first 12 digits are the millisecond: never behind the previous id's
    // (the system clock is not stepped back during the test).
    if (!previous.empty()) {
      ASSERT_GE(h.substr(0, 12), previous.substr(0, 12)) << h;
    }
    previous = h;
  }
  // Ids of one millisecond still differ in their 80 random bits.
  const std::string a = TimeOrderedHex128(), b = TimeOrderedHex128();
  EXPECT_NE(a.substr(12), b.substr(12));
}

TEST(IdsTest, ForkedChildDoesNotRepeatTheParentsIds) {
  // The parent draws once so its thread has buffered random bytes; the child
  // must not hand out the same ones.
  (void)NewId("p");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string id = NewId("c");
    const ssize_t w = write(fds[1], id.data(), id.size());
    _exit(w == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string parent_id = NewId("c");
  char buf[128];
  const ssize_t n = read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_GT(n, 0);
  const std::string child_id(buf, static_cast<size_t>(n));
  // Same prefix and (likely) the same millisecond: the random part differs.
  EXPECT_NE(child_id.substr(child_id.size() - 20), parent_id.substr(parent_id.size() - 20));
}

}  // namespace
}  // namespace txc
