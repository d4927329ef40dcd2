/* The declaration in include/CFuzzDriver.h is all this module holds; SwiftPM needs one source file. */
#include "CFuzzDriver.h"
