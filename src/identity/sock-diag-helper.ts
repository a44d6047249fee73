// The sock_diag helper: a small Python program, run as a child process, that asks the kernel
// (NETLINK_SOCK_DIAG, exact 4-tuple lookup) for one socket's state and inode. Node cannot open
// netlink sockets; the kernel answers such a lookup from its hash table directly, where
// /proc/net/tcp makes it print every socket in the namespace.
//
// Protocol: one JSON object per line each way.
//   request:  {"id": n, "ns": "/proc/<pid>/ns/net" | null, "family": 4 | 6,
//              "src": addr, "sport": n, "dst": addr, "dport": n}   (src = the client's end)
//   response: {"id": n, "state": s, "inode": i} | {"id": n, "missing": true}
//             | {"id": n, "error": "..."}
// It exits when its stdin closes.
export const SOCK_DIAG_HELPER = String.raw`
import json, os, socket, struct, sys, ctypes

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
own_ns = os.open('/proc/self/ns/net', os.O_RDONLY)
sockets = {}

def netlink_for(ns):
    key = os.stat(ns).st_ino if ns else None
    nl = sockets.get(key)
    if nl is None:
        if ns:
            fd = os.open(ns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), 'setns ' + ns)
                try:
                    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
                finally:
                    libc.setns(own_ns, CLONE_NEWNET)
            finally:
                os.close(fd)
        else:
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        nl.settimeout(2)
        sockets[key] = nl
    return nl

def lookup(nl, family, src, sport, dst, dport):
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    sb = socket.inet_pton(af, src).ljust(16, b'\0')
    db = socket.inet_pton(af, dst).ljust(16, b'\0')
    req = (struct.pack('=BBBBI', af, socket.IPPROTO_TCP, 0, 0, 0xffffffff)
           + struct.pack('>HH', sport, dport) + sb + db
           + struct.pack('=III', 0, 0xffffffff, 0xffffffff))
    nl.send(struct.pack('=IHHII', 16 + len(req), SOCK_DIAG_BY_FAMILY, 1, 0, 0) + req)
    data = nl.recv(65536)
    kind = struct.unpack_from('=H', data, 4)[0]
    if kind == NLMSG_ERROR:
        err = -struct.unpack_from('=i', data, 16)[0]
        if err == 2:
            return None
        raise OSError(err, os.strerror(err))
    state = struct.unpack_from('=B', data, 17)[0]
    got_sport, got_dport = struct.unpack_from('>HH', data, 20)
    inode = struct.unpack_from('=I', data, 16 + 4 + 48 + 16)[0]
    if (got_sport, got_dport) != (sport, dport):
        return None
    return state, inode

for line in sys.stdin:
    try:
        q = json.loads(line)
    except ValueError:
        continue
    out = {'id': q.get('id')}
    try:
        found = lookup(netlink_for(q.get('ns')), q['family'], q['src'], q['sport'], q['dst'], q['dport'])
        if found is None:
            out['missing'] = True
        else:
            out['state'], out['inode'] = found
    except Exception as e:
        out['error'] = str(e)
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
`;
