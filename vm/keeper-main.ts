// The warm VM's keeper as a process of its own: `node build/cli/keeper.mjs
// WARM_DIR VM_DIR`, started by vm/warm.ts (spawnKeeper) beside QEMU.
import { runKeeper } from './keeper.ts';
import { WarmStore } from './warm.ts';

const [warmDir, vmDir] = process.argv.slice(2);
if (!warmDir || !vmDir) {
  console.error('usage: keeper WARM_DIR VM_DIR (started by `npm run vm -- up`)');
  process.exit(2);
}
await runKeeper(new WarmStore(warmDir), vmDir);
