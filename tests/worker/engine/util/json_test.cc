#include "worker/engine/util/json.h"

#include <gtest/gtest.h>

namespace clmae {
namespace {

TEST(JsonTest, ParsesNestedDocument) {
  auto v = ParseJson(R"( {"a": [1, -2.5e1, true, null], "b": {"c": "x\"\u00e9\n"}} )");
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& a = v->object().at("a").array();
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].number(), 1);
  EXPECT_EQ(a[1].number(), -25);
  EXPECT_TRUE(std::get<bool>(a[2].value));
  EXPECT_EQ(v->object().at("b").object().at("c").string(), "x\"\xc3\xa9\n");
}

TEST(JsonTest, RejectsMalformedWithOffset) {
  for (const char* bad : {"{", "{\"a\" 1}", "[1,]", "\"abc", "{} x", "[01x]", "nul"}) {
    auto v = ParseJson(bad);
    EXPECT_FALSE(v.ok()) << bad;
    EXPECT_NE(v.status().message().find("at byte"), std::string::npos) << bad;
  }
  std::string deep(100, '[');
  EXPECT_FALSE(ParseJson(deep).ok());
}

TEST(JsonTest, QuoteEscapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  auto back = ParseJson(JsonQuote("tab\there"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->string(), "tab\there");
}

}  // namespace
}  // namespace clmae
