# METADATA
# title: portcullis egress decision
# description: |
#   Decides whether the calling program may reach input.network.host:port, from the
#   normalised policy document at data.portcullis (policies by name, plus an index by exact
#   host, wildcard suffix and port). Only wasm-native builtins are used, so `opa eval` and the
#   compiled wasm give the same answers.
package portcullis.authz

unresolved := "<unresolved>"

default policies := {}

policies := data.portcullis.policies

# --- the request, normalised --------------------------------------------------------------

host := trim_suffix(lower(input.network.host), ".")

port := input.network.port

port_text := format_int(port, 10)

exec_path := input.exec.path

ancestor_paths := [_ancestor_path(a) | some a in object.get(input.exec, "ancestors", [])]

_ancestor_path(a) := a if is_string(a)

_ancestor_path(a) := a.path if is_object(a)

# Every executable path the binary globs are tried against: the caller and its ancestors.
# The sentinel is not absolute, so it never matches a glob.
exec_paths contains p if {
	some p in array.concat([exec_path], ancestor_paths)
	startswith(p, "/")
}

request_method := upper(input.request.method)

request_path := split(input.request.path, "?")[0]

# --- candidate endpoints from the index: no walk over all policies -------------------------

candidates contains ref if {
	some ref in data.portcullis.index.exact[host]
}

candidates contains ref if {
	labels := split(host, ".")
	some i in numbers.range(1, count(labels) - 1)
	suffix := concat(".", array.slice(labels, i, count(labels)))
	some ref in data.portcullis.index.wildcard[suffix]
}

candidates contains ref if {
	some ref in data.portcullis.index.hostless[port_text]
}

_endpoint(ref) := policies[ref[0]].endpoints[ref[1]]

# --- matching -----------------------------------------------------------------------------

host_matches(ep) if ep.host_kind == "none"

host_matches(ep) if {
	ep.host_kind == "exact"
	ep.host == host
}

host_matches(ep) if {
	ep.host_kind == "wildcard"
	host_labels_nonempty
	_wildcard_host_matches(ep.host)
}

# A wildcard stands for characters inside labels, never for an empty label: `*.example.com`
# does not match ".example.com", nor `**.example.com` "a..example.com". (Exact hosts have no
# empty label, so they cannot equal such a host.)
host_labels_nonempty if not contains(concat("", [".", host, "."]), "..")

# glob.match compiles its pattern on every call in wasm (µs each), so the common wildcard
# forms are matched with string functions and only the rest reach glob.match. Same semantics:
# `*` matches a run without a dot, `**` any run. Host patterns hold no other glob syntax.

# One `*` (e.g. "*.example.com", "api-*.example.net").
_wildcard_host_matches(pattern) if {
	parts := split(pattern, "*")
	count(parts) == 2
	_affixes_match(parts[0], parts[1], host)
	not contains(_middle(parts[0], parts[1], host), ".")
}

# "**.example.com".
_wildcard_host_matches(pattern) if _double_star_suffix_matches(pattern)

_wildcard_host_matches(pattern) if {
	count(split(pattern, "*")) > 2
	not _double_star_suffix(pattern)
	glob.match(pattern, ["."], host)
}

_double_star_suffix(pattern) if {
	startswith(pattern, "**.")
	not contains(substring(pattern, 2, -1), "*")
}

_double_star_suffix_matches(pattern) if {
	_double_star_suffix(pattern)
	endswith(host, substring(pattern, 2, -1))
}

_affixes_match(prefix, suffix, text) if {
	startswith(text, prefix)
	endswith(text, suffix)
	count(text) >= count(prefix) + count(suffix)
}

_middle(prefix, suffix, text) := substring(text, count(prefix), (count(text) - count(prefix)) - count(suffix))

# No address constraint, or not resolved yet (the proxy asks again with the addresses).
addresses_ok(ep) if count(ep.allowed_ips) == 0

addresses_ok(ep) if {
	count(ep.allowed_ips) > 0
	not input.network.addresses
}

addresses_ok(ep) if {
	count(ep.allowed_ips) > 0
	count(input.network.addresses) > 0
	every address in input.network.addresses {
		some cidr in ep.allowed_ips
		net.cidr_contains(cidr, address)
	}
}

# Empty or omitted binaries: any program, the unresolved sentinel included.
binary_allowed(name) if count(object.get(policies[name], "binaries", [])) == 0

binary_allowed(name) if {
	some pattern in policies[name].binaries
	some p in exec_paths
	_binary_matches(pattern, p)
}

# A pattern without `*` compares as a string; glob.match (costly in wasm) runs only when the
# path starts with the literal text before the pattern's first `*`. Binary patterns hold no
# other glob syntax.
_binary_matches(pattern, p) if pattern == p

_binary_matches(pattern, p) if {
	contains(pattern, "*")
	startswith(p, split(pattern, "*")[0])
	glob.match(pattern, ["/"], p)
}

rule_matches(rule) if {
	rule.method in {"*", request_method}
	_rule_path_matches(rule.path)
}

# "/prefix/**" (the usual form) is a prefix test; other paths go to glob.match.
_rule_path_matches(pattern) if {
	_prefix_pattern(pattern)
	startswith(request_path, trim_suffix(pattern, "**"))
}

_rule_path_matches(pattern) if {
	not _prefix_pattern(pattern)
	glob.match(pattern, ["/"], request_path)
}

_prefix_pattern(pattern) if {
	endswith(pattern, "/**")
	prefix := trim_suffix(pattern, "**")
	not contains(prefix, "*")
	not contains(prefix, "?")
	not contains(prefix, "[")
	not contains(prefix, "{")
	not contains(prefix, "\\")
}

denied_by_rule(ep) if {
	some rule in ep.deny_rules
	rule_matches(rule)
}

permitted_by_rule(ep) if {
	some rule in ep.rules
	rule_matches(rule)
}

# L7 verdict of one endpoint: "ok", or why the request fails its method/path rules.
l7_verdict(ep) := "ok" if ep.protocol != "rest"

# A tunnel to an inspected rest endpoint is allowed: the proxy terminates its TLS and asks
# again for every request on it (see `inspect`).
l7_verdict(ep) := "ok" if {
	ep.protocol == "rest"
	not input.request
	inspected(ep)
}

l7_verdict(ep) := "opaque" if {
	ep.protocol == "rest"
	not input.request
	not inspected(ep)
}

l7_verdict(ep) := "deny_rule" if {
	ep.protocol == "rest"
	denied_by_rule(ep)
}

l7_verdict(ep) := "ok" if {
	ep.protocol == "rest"
	not denied_by_rule(ep)
	permitted_by_rule(ep)
}

l7_verdict(ep) := "not_permitted" if {
	ep.protocol == "rest"
	input.request
	not denied_by_rule(ep)
	not permitted_by_rule(ep)
}

# Endpoints whose host and port match but whose allowed_ips exclude the resolved addresses.
address_mismatch contains ref[0] if {
	some ref in candidates
	ep := _endpoint(ref)
	host_matches(ep)
	port in ep.ports
	not addresses_ok(ep)
}

# Endpoints that cover host, port and addresses: [policy, endpoint index].
covering contains ref if {
	some ref in candidates
	ep := _endpoint(ref)
	host_matches(ep)
	port in ep.ports
	addresses_ok(ep)
}

covering_policies contains ref[0] if some ref in covering

binary_passing contains ref if {
	some ref in covering
	binary_allowed(ref[0])
}

# The L7 verdict of each endpoint that passed host, port and binary, evaluated once.
l7_verdicts[ref] := l7_verdict(_endpoint(ref)) if some ref in binary_passing

allowing contains ref if {
	some ref in binary_passing
	l7_verdicts[ref] == "ok"
}

auditing contains ref if {
	some ref in binary_passing
	l7_verdicts[ref] != "ok"
	_endpoint(ref).enforcement == "audit"
}

allowing_policies contains ref[0] if some ref in allowing

auditing_policies contains ref[0] if some ref in auditing

# --- TLS inspection ------------------------------------------------------------------------

# The loader always writes `tls` (inspect by default for rest endpoints, passthrough for the
# others); a data document without it is never inspected, so a rest tunnel stays denied.
inspected(ep) if ep.tls == "inspect"

# The tunnel is TLS-inspected when any endpoint that covers it for this caller (host, port,
# addresses, binary) asks for it; at that level every such endpoint lets the tunnel through, and
# the answer stays the same for each request on it. Where endpoints disagree, inspecting is the
# safe choice: method/path rules can only be applied to an inspected connection, and a
# passthrough endpoint loses nothing by it (it still allows each request, now decided and audited).
default inspect := false

inspect if {
	some ref in binary_passing
	inspected(_endpoint(ref))
}

# --- credentials --------------------------------------------------------------------------

# The credentials an allow binds: those listed by the endpoints it rests on (names only; the
# values never reach the data document). The proxy swaps a placeholder only for a credential
# named here, and refuses every other placeholder; it does not work this out again itself.
_bound(ref) := object.get(_endpoint(ref), "credentials", [])

bound_credentials contains name if {
	some ref in allowing
	some name in _bound(ref)
}

# Those the endpoints let travel in plain HTTP (allow_cleartext_credentials) ...
cleartext_credentials contains name if {
	some ref in allowing
	object.get(_endpoint(ref), "allow_cleartext_credentials", false) == true
	some name in _bound(ref)
}

# ... and in request bodies (credentials_in_body).
body_credentials contains name if {
	some ref in allowing
	object.get(_endpoint(ref), "credentials_in_body", false) == true
	some name in _bound(ref)
}

# Added to an allow only when some credential is bound, so decisions without any keep their shape.
default credential_fields := {}

credential_fields := {
	"credentials": sort(bound_credentials),
	"cleartext_credentials": sort(cleartext_credentials),
	"body_credentials": sort(body_credentials),
} if count(bound_credentials) > 0

# --- author extensions: data.portcullis.ext.deny is a set of reasons ------------------------

ext_denials contains reason if {
	some item in data.portcullis.ext.deny
	reason := _ext_reason(item)
}

# A member without a usable reason (a number, an object without a string `reason`, the values
# of an object-valued `deny[x] := v`) still denies: an extension must never fail open.
ext_denials contains "an extension rule denied the request without a reason" if {
	some item in data.portcullis.ext.deny
	not _ext_reason(item)
}

_ext_reason(item) := item if is_string(item)

_ext_reason(item) := item.reason if {
	is_object(item)
	is_string(item.reason)
}

# --- reasons ------------------------------------------------------------------------------

target := concat(":", [host, port_text])

_list(s) := concat(", ", sort(s))

binary_text := "<unresolved> (the calling program could not be identified)" if exec_path == unresolved

binary_text := concat("", [exec_path, " (ancestors: ", concat(" <- ", ancestor_paths), ")"]) if {
	exec_path != unresolved
	count(ancestor_paths) > 0
}

binary_text := exec_path if {
	exec_path != unresolved
	count(ancestor_paths) == 0
}

request_text := concat(" ", [request_method, request_path])

l7_reasons contains [ref[0], reason] if {
	some ref in binary_passing
	l7_verdicts[ref] == "deny_rule"
	reason := concat("", [request_text, " to ", target, " is blocked by a deny rule of policy ", ref[0]])
}

l7_reasons contains [ref[0], reason] if {
	some ref in binary_passing
	l7_verdicts[ref] == "not_permitted"
	reason := concat("", [request_text, " to ", target, " is not permitted by the method/path rules of policy ", ref[0]])
}

l7_reasons contains [ref[0], reason] if {
	some ref in binary_passing
	l7_verdicts[ref] == "opaque"
	reason := concat("", [
		target, " needs HTTP method/path inspection (protocol: rest in policy ", ref[0],
		"), which an opaque tunnel does not allow, and the endpoint has tls: passthrough;",
		" send plain HTTP through the proxy",
	])
}

deny_reason := ["", "no policy is loaded, so all egress is denied"] if count(policies) == 0

deny_reason := ["", reason] if {
	count(policies) > 0
	count(covering) == 0
	count(address_mismatch) == 0
	reason := concat("", [target, " is not allowed by any policy"])
}

deny_reason := [min(address_mismatch), reason] if {
	count(policies) > 0
	count(covering) == 0
	count(address_mismatch) > 0
	reason := concat("", [
		target, " resolved to addresses outside the allowed_ips of policy ",
		_list(address_mismatch),
	])
}

deny_reason := [min(covering_policies), reason] if {
	count(covering) > 0
	count(binary_passing) == 0
	reason := concat("", [
		"binary ", binary_text, " is not allowed to reach ", target,
		"; the policies that cover it (", _list(covering_policies), ") allow only their listed binaries",
	])
}

deny_reason := min(l7_reasons) if {
	count(binary_passing) > 0
	count(l7_reasons) > 0
}

# --- the decision ---------------------------------------------------------------------------

# A deny carries what report-only mode needs for its SSRF check: whether some endpoint matching
# host and port (whatever its binaries and method/path rules) names every resolved address in
# its allowed_ips.
addresses_named if {
	input.network.addresses
	some ref in covering
	count(_endpoint(ref).allowed_ips) > 0
}

default addresses_named := false

# An allow or an audit carries whether an endpoint it rests on names every resolved address.
explicit_ips if {
	input.network.addresses
	some ref in (allowing | auditing)
	count(_endpoint(ref).allowed_ips) > 0
}

default decision := {
	"allow": false,
	"decision": "deny",
	"reason": "no decision could be made for this input (malformed request), so it is denied",
	"policy": null,
}

decision := {
	"allow": false,
	"decision": "deny",
	"reason": concat("", ["blocked by an extension rule: ", min(ext_denials)]),
	"policy": null,
	"explicit_ips": addresses_named,
} if {
	count(ext_denials) > 0
} else := object.union(
	{
		"allow": true,
		"decision": "allow",
		"reason": concat("", [target, " allowed by policy ", min(allowing_policies)]),
		"policy": min(allowing_policies),
		"explicit_ips": explicit_ips,
		"inspect": inspect,
	},
	credential_fields,
) if {
	count(allowing) > 0
} else := {
	"allow": true,
	"decision": "audit",
	"reason": concat("", [
		"would be denied (", deny_reason[1], ") but policy ", min(auditing_policies),
		" has enforcement: audit",
	]),
	"policy": min(auditing_policies),
	"explicit_ips": explicit_ips,
	"inspect": inspect,
} if {
	count(auditing) > 0
} else := {
	"allow": false,
	"decision": "deny",
	"reason": deny_reason[1],
	"policy": _null_if_empty(deny_reason[0]),
	"explicit_ips": addresses_named,
}

default explicit_ips := false

_null_if_empty(s) := null if s == ""

_null_if_empty(s) := s if s != ""
