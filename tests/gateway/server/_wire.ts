/** The byte-level HTTP / WebSocket test client lives in bench/wire.ts (the soak's hostile clients use it too). */
export * from "../../../bench/wire.ts";
