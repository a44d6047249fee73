// Parents and children read from the kernel's children files, against real process trees.
import { afterAll, describe, expect, it } from 'vitest';
import { kernelRelatives, parseChildrenList } from '../src/identity/kernel-relatives.js';
import { ProcessTable } from '../src/identity/process-table.js';
import { Children, childPids, firstLine, waitFor } from './fixtures/identity/harness.js';

const children = new Children();
afterAll(() => children.killAll());

describe('parseChildrenList', () => {
  it('reads space-separated pids and ignores anything else', () => {
    expect(parseChildrenList('12 345 6789 ')).toEqual([12, 345, 6789]);
    expect(parseChildrenList('')).toEqual([]);
    expect(parseChildrenList('12 x -3 0 7')).toEqual([12, 7]);
  });
});

describe('kernel relatives', () => {
  const kernel = kernelRelatives();

  it('are available on this kernel (CONFIG_PROC_CHILDREN)', () => {
    expect(kernel).not.toBeNull();
  });

  it('name the parent, the children (of every thread) and the descendants of a real tree, like a process listing', async () => {
    // bash → python3 (which starts a sleep from a second thread) and a sleep of its own.
    const bash = children.spawn('/usr/bin/bash', ['-c', `sleep 60 & python3 -c "
import subprocess, threading, time
t = threading.Thread(target=lambda: subprocess.Popen(['sleep', '60']))
t.start(); t.join(); print('ready', flush=True); time.sleep(60)"; wait`], { stdout: true });
    await firstLine(bash);
    const [sleeper, python] = await waitFor(() => {
      const pids = childPids(bash.pid!);
      return pids.length === 2 ? pids : null;
    }, 'two children of bash');
    const table = new ProcessTable();
    await table.refresh();
    const relatives = kernel!.asOf(performance.now());
    expect(new Set(relatives.childrenOf(bash.pid!))).toEqual(new Set(table.childrenOf(bash.pid!)));
    expect(new Set([sleeper, python])).toEqual(new Set(relatives.childrenOf(bash.pid!)));
    const pythonPid = table.childrenOf(bash.pid!).find((pid) => table.childrenOf(pid).length === 1)!;
    const threadChild = relatives.childrenOf(pythonPid);
    expect(threadChild).toHaveLength(1);
    expect(relatives.parentOf(threadChild[0]!)).toBe(pythonPid);
    expect(new Set(relatives.descendantsOf(bash.pid!))).toEqual(new Set(table.descendantsOf(bash.pid!)));
    expect(relatives.descendantsOf(bash.pid!)[0]).toBe(bash.pid);
  });

  it('read again for a lookup that began after the last read', async () => {
    const bash = children.spawn('/usr/bin/bash', ['-c', 'read line; sleep 60 & wait'], {});
    const before = kernel!.asOf(performance.now()).childrenOf(bash.pid!);
    expect(before).toEqual([]);
    bash.stdin!.write('go\n');
    const sleeper = await waitFor(() => childPids(bash.pid!)[0], 'the sleep');
    // As of a moment before that read, the kept (empty) list answers; as of now, a new read.
    expect(kernel!.asOf(0).childrenOf(bash.pid!)).toEqual([]);
    expect(kernel!.asOf(performance.now()).childrenOf(bash.pid!)).toEqual([sleeper]);
  });
});
