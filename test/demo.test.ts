// The README's demo, run as a test: its output must show each of the seven outcomes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listNamespaces } from '../src/netns/namespaces.js';

describe('npm run demo', () => {
  it('shows an allowed call, each kind of refusal and the summary, and leaves nothing behind', async () => {
    const { code, output, pid } = await new Promise<{ code: number | null; output: string; pid: number }>((resolve) => {
      const child = spawn(process.execPath, [join(process.cwd(), 'dist/sandbox/demo.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('close', (c) => resolve({ code: c, output, pid: child.pid! }));
    });
    expect(code, output).toBe(0);
    // 1. the allowed HTTPS API call, answered by the simulated API
    expect(output).toMatch(/✔ allowed \/usr\/bin\/curl → api\.llm\.example:443 \[policy llm-api\]/);
    expect(output).toContain('"host":"api.llm.example","method":"POST","path":"/v1/chat"');
    // 2. a host no policy allows
    expect(output).toMatch(/✘ denied\s+\/usr\/bin\/curl → paste\.bin\.example:443/);
    // 3. a program the policy does not allow for that host
    expect(output).toMatch(/✘ denied\s+\/usr\/bin\/python3[.\d]* → git\.code\.example:8443/);
    // 4. inspected HTTPS with no CA flag: GET allowed by the L7 rule, the admin POST refused with the JSON body
    expect(output).toContain('{"host":"tickets.corp.example","method":"GET","path":"/v1/tickets/42","tls":true');
    expect(output).toMatch(/✔ allowed \/usr\/bin\/curl → tickets\.corp\.example:443 GET \/v1\/tickets\/42/);
    expect(output).toMatch(/✘ denied\s+\/usr\/bin\/curl → tickets\.corp\.example:443 POST \/v1\/admin\/reset/);
    expect(output).toContain('{"error":"policy_denied","detail":"POST /v1/admin/reset to tickets.corp.example:443 is blocked by a deny rule');
    // 5. git over inspected HTTPS: the clone allowed by the rules, the push refused by a deny rule
    expect(output).toMatch(/✔ allowed \/usr\/lib\/git-core\/git-remote-https? → git\.code\.example:8443 POST \/org\/repo\.git\/git-upload-pack/);
    expect(output).toContain('git clone: done, README says: the demo repository');
    expect(output).toMatch(/✘ denied\s+\/usr\/lib\/git-core\/git-remote-https? → git\.code\.example:8443 POST \/org\/repo\.git\/git-receive-pack/);
    expect(output).toContain('git push: refused');
    expect(output).not.toContain('this should not happen');
    // 6. a direct connection around the proxy, refused by nft at once
    expect(output).toMatch(/node: ECONNREFUSED after \d+ ms/);
    // 7. data smuggled in a DNS name, refused by the DNS proxy
    expect(output).toMatch(/✘ DNS\s+[0-9a-f]+\.exfil\.example → REFUSED/);
    expect(output).toMatch(/failed: EREFUSED/);
    // the summary
    expect(output).toContain('portcullis summary');
    expect(output).toMatch(/DNS refused\s+1\s+[0-9a-f]+\.exfil\.example/);
    expect(output).toMatch(/packets? rejected/);
    expect(output).toMatch(/sandbox peak CPU \d+%, memory/);
    expect((await listNamespaces()).filter((n) => n.startsWith(`pcsim-${pid}-`))).toEqual([]);
  });
});
