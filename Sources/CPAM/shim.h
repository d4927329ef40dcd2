#ifndef BREAKGLASS_CPAM_SHIM_H
#define BREAKGLASS_CPAM_SHIM_H

#include <security/pam_appl.h>

/* PAM_FAIL_DELAY callback that does nothing: the gateway applies its own non-blocking delay, so no
   PAM worker thread sleeps after a failed attempt. It is also called on success. */
static void breakglass_pam_no_fail_delay(int retval, unsigned usec_delay, void *appdata_ptr) {
    (void)retval;
    (void)usec_delay;
    (void)appdata_ptr;
}

/* Installs breakglass_pam_no_fail_delay as the handle's PAM_FAIL_DELAY item. Swift cannot turn a C
   function pointer into the `const void *` that pam_set_item takes, so the cast lives here. */
static inline int breakglass_pam_override_fail_delay(pam_handle_t *handle) {
    return pam_set_item(handle, PAM_FAIL_DELAY, (const void *)breakglass_pam_no_fail_delay);
}

#endif
