#include "services/checkpoint_download.h"
