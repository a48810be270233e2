/* ctx-shell.c — see ctx-shell.h. Shell commands are called through `builtin` so that a
 * function the user defined with the same name (printf, eval, unset…) cannot break the
 * protocol. Saved variables are kept with ${K@A} (the declare statement that recreates K
 * with its attributes), which costs no subshell: an execution with the sandbox's 200 envs
 * does not fork 200 times.
 */
#include "ctx-shell.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

/* What undoes the envs of an execution: idempotent, as both the last line and the sync
 * line run it. */
static const char restore_text[] =
        "if [[ -v __ai2in_keys ]]; then builtin unset \"${__ai2in_keys[@]}\"; "
        "for __ai2in_s in \"${__ai2in_saved[@]}\"; do builtin eval \"$__ai2in_s\"; done; fi; "
        "builtin unset __ai2in_keys __ai2in_saved __ai2in_s __ai2in_code; ";

int shell_quote(struct buf *b, const char *s) {
        int r = buf_append_str(b, "'");

        while (r >= 0 && *s) {
                size_t n = strcspn(s, "'");
                r = buf_append(b, s, n);
                s += n;
                if (r >= 0 && *s == '\'') {
                        r = buf_append_str(b, "'\\''");
                        s++;
                }
        }
        return r < 0 ? r : buf_append_str(b, "'");
}

bool shell_is_name(const char *s) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
                return false;
        for (s++; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

int bash_init_text(struct buf *b, const char *token) {
        return buf_printf(b,
                          "PS1= PS2= PS0=; builtin set +H +o history; builtin unset HISTFILE MAILCHECK PROMPT_COMMAND; "
                          "builtin printf '%%s ready\\n' %s >&0\n",
                          token);
}

/* Saves and exports each of envs: "__ai2in_keys=(K…); __ai2in_saved=(); [[ -v K ]] &&
 * __ai2in_saved+=("${K@A}"); export K='V'; …". */
static int envs_text(struct buf *b, json_t *envs) {
        const char *key;
        json_t *v;
        int r;

        json_object_foreach(envs, key, v)
                if (!shell_is_name(key) || !json_is_string(v))
                        return -EINVAL;
        r = buf_append_str(b, "__ai2in_keys=(");
        json_object_foreach(envs, key, v)
                if (r >= 0)
                        r = buf_printf(b, "%s ", key);
        if (r >= 0)
                r = buf_append_str(b, "); __ai2in_saved=(); ");
        json_object_foreach(envs, key, v) {
                if (r >= 0)
                        r = buf_printf(b, "[[ -v %s ]] && __ai2in_saved+=(\"${%s@A}\"); builtin export %s=", key, key,
                                       key);
                if (r >= 0)
                        r = shell_quote(b, json_string_value(v));
                if (r >= 0)
                        r = buf_append_str(b, "; ");
        }
        return r;
}

int bash_request_text(struct buf *b, const char *token, uint64_t seq, const char *code, json_t *envs) {
        int r = buf_append_str(b, "__ai2in_code=");

        if (r >= 0)
                r = shell_quote(b, code);
        if (r >= 0)
                r = buf_append_str(b, "\n");
        if (r >= 0 && envs && json_object_size(envs) > 0)
                r = envs_text(b, envs);
        if (r >= 0)
                r = buf_printf(b,
                               "builtin printf '%%s begin %%s\\n' %s %" PRIu64 " >&0; "
                               "builtin eval \"$__ai2in_code\" </dev/null\n"
                               "__ai2in_rc=$?; %s"
                               "builtin printf '%%s end %%s %%s\\n' %s %" PRIu64 " \"$__ai2in_rc\" >&0\n",
                               token, seq, restore_text, token, seq);
        return r;
}

int bash_sync_text(struct buf *b, const char *token, uint64_t seq) {
        return buf_printf(b, "%sbuiltin printf '%%s sync %%s\\n' %s %" PRIu64 " >&0\n", restore_text, token, seq);
}
