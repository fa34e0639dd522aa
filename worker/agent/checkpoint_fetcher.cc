#include "worker/agent/checkpoint_fetcher.h"
