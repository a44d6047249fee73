# Unit tests for the example policy (extensions.yaml) together with its extension rules (../ext).
# Run: portcullis test --policy policies/examples/extensions.yaml --rego policies/examples/ext policies/examples/ext-tests
package portcullis.ext_test

import data.portcullis.authz.decision

req(binary, host, port) := {"exec": {"path": binary, "ancestors": []}, "network": {"host": host, "port": port}}

http(binary, host, method, path) := object.union(req(binary, host, 80), {"request": {"method": method, "path": path}})

# --- what the YAML allows and the extension leaves alone ---------------------------------------

test_https_to_forge_any_binary if {
	d := decision with input as req("/usr/bin/python3", "git.example.com", 443)
	d.allow
	d.policy == "source-hosting"
}

test_ssh_client_on_port_22 if {
	d := decision with input as req("/usr/bin/ssh", "git.example.com", 22)
	d.allow
	d.policy == "source-hosting"
}

test_paste_read_allowed if {
	d := decision with input as http("/usr/bin/curl", "abc.paste.example", "GET", "/raw/1")
	d.allow
	d.policy == "pastebin"
}

test_unresolved_on_443_allowed if {
	d := decision with input as req("<unresolved>", "a.b.cache.example.org", 443)
	d.allow
	d.policy == "build-cache"
}

# --- what the YAML allows and the extension denies -----------------------------------------------

test_port_22_other_binary_denied if {
	d := decision with input as req("/usr/bin/python3", "git.example.com", 22)
	not d.allow
	d.decision == "deny"
	d.reason == "blocked by an extension rule: port 22 (SSH) may only be used by the ssh client"
	d.policy == null
}

test_paste_upload_denied if {
	d := decision with input as http("/usr/bin/curl", "ABC.paste.example.", "post", "/new")
	not d.allow
	d.reason == "blocked by an extension rule: uploads (POST) to paste sites such as abc.paste.example are not allowed"
}

test_unresolved_on_8443_denied if {
	d := decision with input as req("<unresolved>", "a.cache.example.org", 8443)
	not d.allow
	d.reason == "blocked by an extension rule: an unidentified program may only use port 443"
}

# An identified program keeps the YAML's answer on 8443.
test_identified_on_8443_allowed if {
	d := decision with input as req("/usr/bin/make", "a.cache.example.org", 8443)
	d.allow
}

# --- what the YAML denies stays denied ------------------------------------------------------------

test_paste_wrong_binary_denied_by_yaml if {
	d := decision with input as http("/usr/bin/wget", "abc.paste.example", "GET", "/raw/1")
	not d.allow
	d.policy == "pastebin"
	startswith(d.reason, "binary /usr/bin/wget is not allowed")
}

test_unknown_host_denied if {
	d := decision with input as req("/usr/bin/ssh", "elsewhere.example", 22)
	not d.allow
	d.reason == "elsewhere.example:22 is not allowed by any policy"
}
