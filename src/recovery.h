/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * recovery: start-up after a state file turned out to be bad (store set it
 * aside as NAME.corrupt-*: one record file of the state directory, or a
 * whole state.json being upgraded). The records it held are lost to the
 * daemon, so no device it has no record of can be proven free or proven
 * not to be a tenant's: until the operator has dealt with the bad file
 * (moved or deleted it), every such device is left exactly as it is and
 * counted as foreign: never destroyed, taken over, rebound or adopted as
 * host memory. The start that sets a file aside also treats all memory that
 * no device holds as dirty (the state then has no boot id), so it is
 * zeroed before anyone gets it.
 */

#include <stdbool.h>

#include "broker.h"

/* Whether this start must distrust unrecorded devices: set_aside (the bad
 * files just set aside, with reason) or an earlier one still in the state
 * directory state_path or next to it. Logs what is wrong and what the
 * daemon does about it. */
bool recovery_needed(const char *state_path, const char *set_aside, const char *reason);

/* Counts a device no record claims as foreign, touching nothing. */
void recovery_keep_device(Pool *p, const DaxDeviceInfo *d);
