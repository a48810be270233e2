/** The SDK's version (sent in the User-Agent header as `ai2in-js/VERSION`). */
export const VERSION = "0.1.0";
