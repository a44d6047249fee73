// Running a system tool (`ip`, `nft`, `getent`…) and collecting its output.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs a command; a non-zero exit throws an Error naming the command and its stderr. */
export async function runCommand(cmd: string, args: string[], input?: string): Promise<CommandResult> {
  try {
    if (input !== undefined) return await runWithInput(cmd, args, input);
    const { stdout, stderr } = await execFileAsync(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

function runWithInput(cmd: string, args: string[], input: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end(input);
  });
}
