/*
 * Every header of the target daemon, for the programs and test harnesses that drive all of it;
 * the files of src/target/ include only the module headers they use.
 */
#ifndef ISTHMUS_TARGET_TARGET_H
#define ISTHMUS_TARGET_TARGET_H

#include "target/conn.h"
#include "target/ffp.h"
#include "target/login.h"
#include "target/server.h"
#include "target/session.h"
#include "target/task.h"

#endif
