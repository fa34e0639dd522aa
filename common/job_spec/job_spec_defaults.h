#pragma once

// The values an unset JobSpec field takes (proto/clmae/v1/job_spec.proto
// documents them; they are the reference implementation's, docs/method.md). One
// place, so the validator and the trainer cannot disagree.

#include <cstdint>

namespace clmae::job_spec_defaults {

inline constexpr char kModelPreset[] = "tiny";

inline constexpr double kMaskRatio = 0.75;
inline constexpr double kLambdaGauss = 1.0;
inline constexpr double kLambdaKl = 0.1;
inline constexpr double kLambdaDiv = 2.0;

inline constexpr double kCurriculumStart = 1.0;
inline constexpr double kCurriculumEnd = -1.0;

inline constexpr double kBlr = 1e-3;
inline constexpr double kMinLr = 0.0;
inline constexpr double kWarmupEpochs = 40.0;
inline constexpr double kWeightDecay = 0.05;
inline constexpr double kBeta1 = 0.9;
inline constexpr double kBeta2 = 0.95;
inline constexpr double kClipGrad = 0.0;  // off
inline constexpr int kAccumIter = 1;
inline constexpr bool kDecayTokens = true;
// lr = blr * effective batch / kLrBatchDivisor.
inline constexpr int kLrBatchDivisor = 256;

// Where Debian's dataset-fashion-mnist package puts the IDX files.
inline constexpr char kFashionMnistPath[] = "/usr/share/datasets/fashion-mnist";
inline constexpr double kCropScaleMin = 0.2;
inline constexpr int kNumWorkers = 2;
inline constexpr int kPrefetch = 4;
inline constexpr int64_t kSyntheticSize = 1024;

inline constexpr int kEpochs = 200;
inline constexpr int kBatchSize = 64;
inline constexpr char kDevice[] = "cpu";
inline constexpr int kLogEvery = 10;
inline constexpr double kBucketMb = 25.0;
inline constexpr int kCollectiveTimeoutS = 300;

inline constexpr int kKnnK = 5;
inline constexpr int kProbeEpochs = 10;
inline constexpr int kEvalEveryEpochs = 2;
inline constexpr int64_t kEvalPeriodicTrainLimit = 1000;
inline constexpr int64_t kEvalPeriodicTestLimit = 250;

inline constexpr int kKeepCheckpoints = 3;
inline constexpr int kPreviewImages = 4;

inline constexpr int kWorldSize = 1;
inline constexpr int kMaxRestarts = 3;

}  // namespace clmae::job_spec_defaults
