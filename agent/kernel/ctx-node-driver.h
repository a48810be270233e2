/* ctx-node-driver.h — the javascript context's driver program (ctx-node-driver.c). */
#pragma once

/* The source of the driver, for `node -e`. */
extern const char node_driver_js[];
