// Request-host IP literals now live with the other address rules in src/net/.
export { classifyHostLiteral, type HostLiteral } from '../net/ip-literal.js';
