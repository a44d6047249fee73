# METADATA
# title: example extension rules
# description: |
#   Deny rules layered over the YAML policy. Every member of `deny` refuses the request,
#   whatever the YAML allows, with "blocked by an extension rule: <reason>".
#   Only builtins that compile natively to WebAssembly are used (no sprintf, no time.*).
package portcullis.ext

# The host as the decision sees it: lower case, no trailing dot.
host := data.portcullis.authz.host

ssh_clients := {"/usr/bin/ssh", "/usr/lib/openssh/ssh"}

# Port 22 is for the ssh client only (git over SSH spawns ssh, so git -> ssh passes).
deny contains "port 22 (SSH) may only be used by the ssh client" if {
	input.network.port == 22
	not input.exec.path in ssh_clients
}

# Reading pastes is fine; uploading to them is not.
deny contains {"reason": concat("", ["uploads (", upper(input.request.method), ") to paste sites such as ", host, " are not allowed"])} if {
	upper(input.request.method) in {"POST", "PUT", "PATCH"}
	glob.match("**.paste.example", ["."], host)
}

# A caller that could not be identified gets TLS ports only, whatever the YAML allows.
deny contains "an unidentified program may only use port 443" if {
	input.exec.path == data.portcullis.authz.unresolved
	input.network.port != 443
}
