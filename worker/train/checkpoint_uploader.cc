#include "worker/train/checkpoint_uploader.h"
