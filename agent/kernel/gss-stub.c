/* gss-stub.c — GSSAPI entry points that always fail, for linking libzmq statically.
 *
 * Debian's libzmq.a is built with GSSAPI support, but Debian ships no static GSSAPI
 * library, and the agent must be a static binary (it is bind-mounted into any template).
 * The agent never enables libzmq's GSSAPI mechanism (its Jupyter sockets use the NULL
 * mechanism over loopback/IPC), so these are never called; if one were, it reports
 * GSS_S_FAILURE and libzmq fails that handshake. Declared with libzmq's prototypes in
 * spirit only: the arguments are not used.
 */
#include <stdint.h>

typedef uint32_t gss_stub_status;

#define GSS_STUB_FAILURE ((gss_stub_status) 13u << 16) /* GSS_S_FAILURE */

const void *GSS_C_NT_HOSTBASED_SERVICE;
const void *GSS_C_NT_USER_NAME;

#define GSS_STUB(name)                                                                                                 \
        gss_stub_status name(void);                                                                                    \
        gss_stub_status name(void) {                                                                                   \
                return GSS_STUB_FAILURE;                                                                               \
        }

GSS_STUB(gss_accept_sec_context)
GSS_STUB(gss_acquire_cred)
GSS_STUB(gss_delete_sec_context)
GSS_STUB(gss_display_name)
GSS_STUB(gss_import_name)
GSS_STUB(gss_init_sec_context)
GSS_STUB(gss_release_buffer)
GSS_STUB(gss_release_cred)
GSS_STUB(gss_release_name)
GSS_STUB(gss_unwrap)
GSS_STUB(gss_wrap)
