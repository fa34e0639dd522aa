#include "services/checkpoint_upload.h"
