#include "worker/engine/train/curriculum.h"

#include <gtest/gtest.h>

namespace clmae {
namespace {

// The reference schedule at the points docs/method.md §4 lists for E = 200.
TEST(CurriculumTest, ReferencePerEpochLineAtE200) {
  CurriculumSchedule s({}, 200, 200 * 10);
  EXPECT_DOUBLE_EQ(s.Value(0, 0), 1.0);
  EXPECT_NEAR(s.Value(99, 990), 0.01, 1e-12);
  EXPECT_NEAR(s.Value(100, 1000), -0.01, 1e-12);
  EXPECT_NEAR(s.Value(199, 1990), -1.0, 1e-12);
  // Exactly 0 is skipped; it is monotone and constant within an epoch.
  for (int e = 0; e < 200; ++e) {
    EXPECT_NE(s.Value(e, 0), 0.0) << e;
    EXPECT_EQ(s.Value(e, 0), s.Value(e, 12345));
    if (e > 0) EXPECT_LT(s.Value(e, 0), s.Value(e - 1, 0));
  }
}

TEST(CurriculumTest, StartAndEndAreParameters) {
  CurriculumOptions o;
  o.start = 0.5;
  o.end = 0.0;
  CurriculumSchedule s(o, 4, 40);
  EXPECT_DOUBLE_EQ(s.Value(0, 0), 0.5);
  EXPECT_DOUBLE_EQ(s.Value(1, 0), 0.5 - 0.5 * 1 / 4.0);
  EXPECT_DOUBLE_EQ(s.Value(2, 0), 0.5 - 0.5 * 3 / 4.0);
  EXPECT_DOUBLE_EQ(s.Value(3, 0), 0.0);
}

TEST(CurriculumTest, PerStepLineCosineAndConstant) {
  CurriculumOptions o;
  o.shape = CurriculumOptions::Shape::kPerStepLinear;
  CurriculumSchedule line(o, 2, 101);
  EXPECT_DOUBLE_EQ(line.Value(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(line.Value(0, 50), 0.0);
  EXPECT_DOUBLE_EQ(line.Value(1, 100), -1.0);
  EXPECT_DOUBLE_EQ(line.Value(0, 25), 0.5);

  o.shape = CurriculumOptions::Shape::kCosine;
  CurriculumSchedule cosine(o, 2, 101);
  EXPECT_DOUBLE_EQ(cosine.Value(0, 0), 1.0);
  EXPECT_NEAR(cosine.Value(0, 50), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(cosine.Value(1, 100), -1.0);
  EXPECT_GT(cosine.Value(0, 25), line.Value(0, 25));  // slower at the start

  o.shape = CurriculumOptions::Shape::kConstant;
  o.start = -0.3;
  CurriculumSchedule constant(o, 2, 101);
  EXPECT_DOUBLE_EQ(constant.Value(0, 0), -0.3);
  EXPECT_DOUBLE_EQ(constant.Value(1, 100), -0.3);
}

}  // namespace
}  // namespace clmae
